"""Shared fixtures. Python 3.6 compatible: the edge tests also run under the Jetson Nano's Python.

``tiny_bundle``: a real bundle built from synthetic images by a short training run and a real
ONNX export (see tests/make_test_bundle.py). The main run builds it into build/test-artifacts;
the Python 3.6 run (no torch there) reuses that folder through MEDKIOSK_TEST_ARTIFACTS.
"""

import glob
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
ARTIFACTS_ENV = "MEDKIOSK_TEST_ARTIFACTS"
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


TEST_KEYS = os.path.join(ROOT, "build", "test-keys")


def pytest_configure(config):
    """Every bundle a test exports is signed with a test key, which the tests (only) trust."""
    from edge.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, keygen

    key = os.path.join(TEST_KEYS, "test.key")
    if not os.path.isfile(key):
        os.makedirs(TEST_KEYS, exist_ok=True)
        keygen(key, key + ".pub")
    os.environ.setdefault(SIGNING_KEY_ENV, key)
    trusted = [TEST_KEYS]
    if os.environ.get(ARTIFACTS_ENV):
        trusted.append(os.path.join(os.environ[ARTIFACTS_ENV], "keys"))
    os.environ[TRUSTED_KEYS_ENV] = os.pathsep.join(trusted)


class Artifacts(object):
    """Paths of the shared test artefacts."""

    def __init__(self, root):
        self.root = root
        self.bundle = os.path.join(root, "bundle")
        self.data = os.path.join(root, "data")


@pytest.fixture(scope="session")
def test_artifacts():
    prebuilt = os.environ.get(ARTIFACTS_ENV)
    if prebuilt:
        artifacts = Artifacts(prebuilt)
        if not os.path.isdir(artifacts.bundle):
            pytest.fail("{}={} has no bundle/; run: python tests/make_test_bundle.py {}".format(
                ARTIFACTS_ENV, prebuilt, prebuilt))
        return artifacts
    pytest.importorskip("torch", reason="building the test bundle needs torch; set " + ARTIFACTS_ENV)
    from tests.make_test_bundle import build_test_bundle

    root = os.path.join(ROOT, "build", "test-artifacts")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    build_test_bundle(root)
    return Artifacts(root)


@pytest.fixture(scope="session")
def tiny_bundle(test_artifacts):
    """Path of a real, valid bundle (4 synthetic classes, 64x64 RGB, EfficientNet-Lite0)."""
    return test_artifacts.bundle


@pytest.fixture(scope="session")
def synth_images(test_artifacts):
    """{class name: [image paths]} of the synthetic data the tiny bundle was trained on."""
    classes = sorted(d for d in os.listdir(test_artifacts.data)
                     if os.path.isdir(os.path.join(test_artifacts.data, d)))
    return {c: sorted(glob.glob(os.path.join(test_artifacts.data, c, "*.png"))) for c in classes}


@pytest.fixture(scope="session")
def real_xray():
    """A real adult chest X-ray from ../shared/data (NIH ChestX-ray14)."""
    images = sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png")))
    if not images:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return images[0]


# `make test-jetpack46` runs the device tests as the Nano has them, without ONNX Runtime. A test that
# needs ONNX Runtime itself (its API, its providers, the onnxruntime backend, a CLI run with
# --backend onnxruntime) is marked ``@pytest.mark.onnxruntime`` (registered in pyproject.toml) and
# skips there, saying why; the kiosk tests run on the TensorRT stand-ins there instead
# (tests/edge/kiosk/conftest.py), other model runs on the numpy evaluator (tests/onnx_numpy.py).
def _has_onnxruntime():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _has_onnxruntime():
        return
    skip = pytest.mark.skip(reason="needs ONNX Runtime, absent here as on a JetPack 4.6 Nano")
    for item in items:
        if item.get_closest_marker("onnxruntime") is not None:
            item.add_marker(skip)
