"""Backends on real ONNX models with ONNX Runtime on the CPU: shape/dtype checks, the provider
really in use, loud GPU->CPU downgrades, the backend table and auto fallback."""

import logging
import os
import shutil

import numpy as np
import pytest

from edge.backends import BACKEND_CHOICES, BACKENDS, open_runner, validate_backend
from edge.backends.base import batch_is_dynamic
from edge.backends.onnxruntime import (
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    OnnxRuntimeRunner,
    provider_downgrade,
    resolve_providers,
)
from edge.bundle import load_bundle
from edge.errors import BackendError, ConfigError
from edge.preprocess import load_image, preprocess


@pytest.fixture(scope="module")
def variants(test_artifacts, tmp_path_factory):
    """Hand-built bundles: dynamic batch, and multilabel with an ood_score output.

    Built with the onnx package (main venv) into the shared test-artifacts folder, so the Python 3.6
    run (no onnx there) reuses them; skipped there if the main run has not built them yet.
    """
    names = ("dynamic", "ood")
    root = os.path.join(test_artifacts.root, "edge-variants")
    if not all(os.path.isfile(os.path.join(root, n, "manifest.json")) for n in names):
        pytest.importorskip("onnx", reason="building graph variants needs the onnx package")
        from tests.edge.tiny_onnx import make_tiny_bundle

        check = {"output": "ood_score", "threshold": 0.8, "method": "brightness",
                 "message": "not a chest X-ray"}
        build = str(tmp_path_factory.mktemp("variants"))
        make_tiny_bundle(os.path.join(build, "dynamic"), dynamic=True)
        make_tiny_bundle(os.path.join(build, "ood"), task="multilabel", input_check=check)
        try:
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(build, root)
        except OSError:
            root = build  # read-only artefacts folder: use them from the temporary folder
    return {name: load_bundle(os.path.join(root, name)) for name in names}


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def _batch(bundle, n=1, value=100.0):
    return np.full(bundle.description.input.shape(n), value, dtype=np.float32)


@pytest.mark.onnxruntime
def test_onnxruntime_runner_reports_the_provider_in_use(bundle):
    with OnnxRuntimeRunner(bundle, providers="cpu", threads=1) as runner:
        assert runner.provider == CPU_EP
        assert runner.precision == "fp32"
        assert not runner.downgraded
        outputs = runner.infer(_batch(bundle))
    probs = outputs["probabilities"]
    assert probs.shape == (1, bundle.description.num_classes)
    assert probs.dtype == np.float32
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    assert "ood_score" not in outputs
    assert runner.session is None  # released on exit


@pytest.mark.onnxruntime
def test_runner_matches_onnxruntime_directly(bundle, synth_images):
    import onnxruntime as ort

    image = load_image(next(iter(synth_images.values()))[0])
    batch = preprocess(image, bundle.description.input)
    expected = ort.InferenceSession(bundle.model_path, providers=[CPU_EP]).run(None, {"image": batch})[0]
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        got = runner.infer(batch)["probabilities"]
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("make, problem", [
    (lambda b: _batch(b).astype(np.float64), "dtype must be float32"),
    (lambda b: _batch(b).astype(np.uint8), "dtype must be float32"),
    (lambda b: _batch(b)[0], "shape must be"),
    (lambda b: np.zeros((1, 1, 64, 64), np.float32), "shape must be"),
    (lambda b: np.zeros((1, 3, 32, 32), np.float32), "shape must be"),
    (lambda b: np.asfortranarray(_batch(b)), "C-contiguous"),
    (lambda b: _batch(b)[:, :, :, ::-1], "C-contiguous"),
    (lambda b: _batch(b).tolist(), "numpy array"),
])
@pytest.mark.onnxruntime
def test_infer_rejects_bad_input(bundle, make, problem):
    with open_runner(bundle, backend="onnxruntime") as runner, pytest.raises(BackendError, match=problem):
        runner.infer(make(bundle))


@pytest.mark.onnxruntime
def test_infer_before_load_is_an_error(bundle):
    runner = open_runner(bundle, backend="onnxruntime")
    with pytest.raises(BackendError, match="before load"):
        runner.infer(_batch(bundle))


@pytest.mark.onnxruntime
def test_fixed_batch_model_takes_one_image(bundle):
    assert not batch_is_dynamic(bundle)  # export's default: batch fixed at 1
    with open_runner(bundle, backend="onnxruntime") as runner:
        assert runner.max_batch == 1
        assert runner.infer(_batch(bundle))["probabilities"].shape == (1, bundle.description.num_classes)
        with pytest.raises(BackendError, match="batch size 2"):
            runner.infer(_batch(bundle, n=2))


@pytest.mark.onnxruntime
def test_dynamic_batch_model_takes_several(variants):
    dynamic = variants["dynamic"]
    assert batch_is_dynamic(dynamic)
    with open_runner(dynamic, backend="onnxruntime") as runner:
        assert runner.infer(_batch(dynamic, n=3))["probabilities"].shape == (3, 4)


@pytest.mark.onnxruntime
def test_ood_output_is_returned(variants):
    bundle = variants["ood"]
    with open_runner(bundle, backend="onnxruntime") as runner:
        out = runner.infer(np.concatenate([_batch(bundle, value=10.0), _batch(bundle, value=250.0)]))
    assert out["ood_score"].shape == (2,)
    # The hand-built graph scores mean brightness in 0..1.
    np.testing.assert_allclose(out["ood_score"], [10 / 255.0, 250 / 255.0], atol=1e-5)


@pytest.mark.onnxruntime
def test_gpu_requested_but_cpu_used_is_loud(bundle, caplog):
    """Real ONNX Runtime without CUDA: asking for CUDA must not fall back to the CPU silently."""
    caplog.set_level(logging.WARNING, logger="medkiosk")
    with open_runner(bundle, backend="onnxruntime", precision="fp32", providers="cuda,cpu") as runner:
        assert runner.provider == CPU_EP
        assert runner.downgraded
        assert "GPU NOT IN USE" in runner.downgrade_reason
        assert runner.downgrade_reason in runner.notices()
    assert "GPU NOT IN USE" in caplog.text


@pytest.mark.onnxruntime
def test_fp16_requested_on_cpu_is_shown(bundle):
    with open_runner(bundle, backend="onnxruntime", precision="fp16", providers="cpu") as runner:
        assert runner.precision == "fp32"
        assert any("FP16 precision requested, running FP32" in line for line in runner.notices())


def test_provider_downgrade_rule():
    assert provider_downgrade([CUDA_EP, CPU_EP], CPU_EP)
    assert provider_downgrade([TENSORRT_EP, CUDA_EP, CPU_EP], CPU_EP)
    assert provider_downgrade([TENSORRT_EP, CUDA_EP, CPU_EP], CUDA_EP) is None
    assert provider_downgrade([CPU_EP], CPU_EP) is None


@pytest.mark.onnxruntime
def test_resolve_providers():
    assert resolve_providers("cuda, cpu") == [CUDA_EP, CPU_EP]
    assert resolve_providers([TENSORRT_EP]) == [TENSORRT_EP]
    default = resolve_providers(None)
    assert default[-1] == CPU_EP and "AzureExecutionProvider" not in default
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider"):
        resolve_providers("azure")


def test_backend_table_and_validation():
    assert set(BACKENDS) == {"tensorrt", "onnxruntime"}
    assert BACKEND_CHOICES[0] == "auto"
    for entry in BACKENDS.values():
        assert callable(entry.load) and callable(entry.check)
    with pytest.raises(ConfigError, match="backend 'cuda' is unknown"):
        validate_backend("cuda")
    with pytest.raises(ConfigError, match="precision 'fp8' is unknown"):
        validate_backend("auto", "fp8")


@pytest.mark.onnxruntime
def test_auto_falls_back_with_a_reason(bundle):
    """No TensorRT on this machine: auto must pick ONNX Runtime and say why."""
    runner = open_runner(bundle, backend="auto")
    assert runner.name == "onnxruntime"
    assert runner.fallback_reason.startswith("Using onnxruntime: tensorrt unavailable")
    assert runner.fallback_reason in runner.notices()


def test_explicit_tensorrt_without_tensorrt_is_an_error(bundle):
    with pytest.raises(BackendError, match="backend tensorrt cannot run"):
        open_runner(bundle, backend="tensorrt")


@pytest.mark.onnxruntime
def test_broken_model_file_is_a_backend_error(tmp_path, bundle):
    broken = str(tmp_path / "broken")
    shutil.copytree(bundle.path, broken)
    loaded = load_bundle(broken)
    with open(loaded.model_path, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\xff" * 64)
    with pytest.raises(BackendError, match="ONNX Runtime cannot load"):
        open_runner(loaded, backend="onnxruntime").load()


@pytest.mark.onnxruntime
def test_onnxruntime_workers_do_not_busy_wait_unless_asked(tiny_bundle, monkeypatch):
    """Spinning workers take the CPU the kiosk's camera and display threads need (docs/benchmarks.md)."""
    import onnxruntime as ort

    from edge.backends.onnxruntime import OnnxRuntimeRunner

    seen = []
    real = ort.InferenceSession

    def entry(options, key):
        try:
            return options.get_session_config_entry(key)
        except RuntimeError:  # not set: ONNX Runtime's default (spinning on)
            return None

    def recording_session(path, sess_options=None, **kwargs):
        seen.append({key: entry(sess_options, key)
                     for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")})
        return real(path, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording_session)
    bundle = load_bundle(tiny_bundle)
    with OnnxRuntimeRunner(bundle) as runner:
        runner.infer(np.zeros(bundle.description.input.shape(1), dtype=np.float32))
    with OnnxRuntimeRunner(bundle, spinning=True):
        pass
    assert seen[0] == {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
    assert "0" not in seen[1].values()
