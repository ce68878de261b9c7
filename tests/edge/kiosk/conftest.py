"""Fixtures of the kiosk tests: a slot on the real test bundle and a USB-stick-like folder."""

import shutil

import pytest

from edge.bundle import load_bundle
from edge.kiosk import ModuleSlot


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
