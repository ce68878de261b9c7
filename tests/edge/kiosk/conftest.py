"""Fixtures of the kiosk tests: a slot on the real test bundle and a USB-stick-like folder."""

import shutil

import pytest

from edge.bundle import load_bundle
from edge.kiosk import ModuleSlot
from tests.edge.tensorrt_tests import standin_backend


@pytest.fixture(autouse=True)
def standin_tensorrt_without_onnxruntime(monkeypatch):
    """Without ONNX Runtime (the JetPack 4.6 run) the kiosk runs TensorRT engines: here on the stand-ins
    (tests/edge/tensorrt_tests/standin_backend.py), put in sys.modules for each test and removed after."""
    if not standin_backend.has_onnxruntime():
        standin_backend.install(monkeypatch)


@pytest.fixture
def slot(tiny_bundle):
    return ModuleSlot("synth-test", bundle=load_bundle(tiny_bundle))


@pytest.fixture
def two_class_folder(tmp_path, synth_images):
    """A USB-stick-like folder with one image of each of two classes."""
    names = sorted(synth_images)
    folder = tmp_path / "usb"
    folder.mkdir()
    shutil.copy(synth_images[names[0]][0], str(folder / "a.png"))
    shutil.copy(synth_images[names[1]][0], str(folder / "b.png"))
    return folder
