# medkiosk: `make demo` runs the main job, `make test` runs every check CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PY36_HOME ?= $(HOME)/.pyenv/versions/3.6.15
VENV36 ?= .venv36
VENVJP46 ?= .venv-jp46
# Code that runs on the Jetson Nano (Python 3.6): the runtime, TensorRT engines included (edge/tensorrt).
DEVICE_CODE := edge

.PHONY: venv demo test lint test-py test-py36 test-jetpack46 i18n mutation clean model-pediatric model-chest baseline-pediatric baseline-chest

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,export,edge,bench,serve,dev]'
	touch $@

demo: venv
	bash scripts/demo.sh $(VENV)/bin/medkiosk

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin -q -t=3.6- --no-tips --violations --eval-annotations $(DEVICE_CODE)

test-py: venv
	$(VENV)/bin/pytest -q

# The Jetson Nano's world: Python 3.6 with JetPack-era numpy, onnxruntime, OpenCV.
$(VENV36)/.installed:
	$(PY36_HOME)/bin/python -m venv $(VENV36)
	$(VENV36)/bin/python -m pip install -q 'pip==21.3.1'
	$(VENV36)/bin/python -m pip install -q 'numpy==1.19.5' 'onnxruntime==1.10.0' \
		'opencv-python-headless==4.6.0.66' 'pytest==7.0.1' 'pydicom==2.3.1' \
		'cryptography==40.0.2' 'flask==2.0.3' 'werkzeug==2.0.3' 'cheroot==9.0.0' 'fpdf2==2.4.6' 'Pillow==8.4.0' \
		'segno==1.6.6'
	touch $@

test-py36: venv
	@if [ -x "$(PY36_HOME)/bin/python" ]; then \
		$(MAKE) --no-print-directory $(VENV36)/.installed && \
		{ [ -d build/test-artifacts/bundle ] || $(PY) tests/make_test_bundle.py build/test-artifacts; } && \
		MEDKIOSK_TEST_ARTIFACTS=$(CURDIR)/build/test-artifacts PYTHONPATH=$(CURDIR) \
			$(VENV36)/bin/python -m pytest -q -p no:cacheprovider tests/edge; \
	else \
		echo "SKIPPED: Python 3.6 edge run ($(PY36_HOME) not found; the Jetson Nano's Python is untested here)"; \
	fi

# JetPack 4.6 as the Nano has it: Python 3.6, apt's numpy 1.13.3 and OpenCV 4.1, NO ONNX Runtime, so a
# numpy/OpenCV call newer than JetPack's fails here first. The kiosk runs its TensorRT backend on the
# stand-ins there, whose engines compute with the numpy evaluator (tests/onnx_numpy.py, checked by
# tests/test_onnx_numpy.py); tests marked `onnxruntime` skip, saying so. One BLAS thread: the
# evaluator's small matrix products are slower with OpenBLAS's threads fighting over 2 shared cores.
# Pillow 8.4.0 (the last for 3.6, raqm built in) stands in for apt's python3-pil 5.1: pip's 5.1.0 wheel
# carries its own FreeType, which crashes beside the system libraqm (apt's build shares one FreeType).
$(VENVJP46)/.installed:
	$(PY36_HOME)/bin/python -m venv $(VENVJP46)
	$(VENVJP46)/bin/python -m pip install -q 'pip==21.3.1'
	$(VENVJP46)/bin/python -m pip install -q 'numpy==1.13.3' 'opencv-python-headless==4.1.2.30' 'pytest==7.0.1' \
		'pydicom==2.3.1' 'cryptography==40.0.2' 'Pillow==8.4.0' 'segno==1.6.6' 'fpdf2==2.4.6'
	touch $@

test-jetpack46: venv
	@if [ -x "$(PY36_HOME)/bin/python" ]; then \
		$(MAKE) --no-print-directory $(VENVJP46)/.installed && \
		{ [ -d build/test-artifacts/bundle ] || $(PY) tests/make_test_bundle.py build/test-artifacts; } && \
		MEDKIOSK_TEST_ARTIFACTS=$(CURDIR)/build/test-artifacts PYTHONPATH=$(CURDIR) OPENBLAS_NUM_THREADS=1 \
			$(VENVJP46)/bin/python -m pytest -q -p no:cacheprovider tests/test_onnx_numpy.py tests/edge; \
	else \
		echo "SKIPPED: JetPack 4.6 library run ($(PY36_HOME) not found)"; \
	fi

test: lint test-py test-py36 test-jetpack46

# The worker's language: re-extract the marked strings (xgettext) and the bundles' screen texts into
# edge/locale/medkiosk.pot, merge them into each .po, compile the .mo files the package ships.
# Needs GNU gettext (apt-get install gettext). tests/edge/test_i18n.py fails until each is translated.
i18n:
	$(PY) scripts/i18n.py

# Mutation score of the safety code (mutmut 3; module -> tests table in scripts/mutation.py); see
# docs/mutation.md. Not part of `make test`: measured on the shared 2-core build machine, one module
# takes from about a minute (quality, preprocess) to 45 minutes (signing, --jobs 1, load 10-12); the
# whole table over an hour. Niced: it uses every core (MUTATION_JOBS to change).
MUTATION_JOBS ?= 2
mutation: venv
	nice -n 10 $(PY) scripts/mutation.py --jobs $(MUTATION_JOBS)

# The shipped modules, reproducibly on a CPU (see docs/models/README.md); each installs its bundle in models/.
model-pediatric: venv
	nice -n 5 $(PY) -m recipes pediatric-pneumonia --out runs/pediatric-pneumonia
model-chest: venv
	nice -n 5 $(PY) -m recipes chest --out runs/chest
baseline-pediatric: venv
	nice -n 5 $(PY) -m recipes pediatric-pneumonia --baseline vgg16_seed --tune-epochs 2
baseline-chest: venv
	nice -n 5 $(PY) -m recipes chest --baseline vgg16_seed --tune-epochs 20 --patience 4

clean:
	rm -rf build $(VENV) $(VENV36) $(VENVJP46) .pytest_cache .ruff_cache
