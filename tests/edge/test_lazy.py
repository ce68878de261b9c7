"""``edge.lazy.require``: the one lazy-import helper, and its one install hint per library."""

import json

import pytest

from edge import lazy
from edge.errors import MissingDependencyError


def test_an_installed_module_is_returned():
    assert lazy.require("json") is json
    assert lazy.require("os.path") is __import__("os").path


@pytest.mark.parametrize("name, hint", [
    ("numpy", lazy.NUMPY_HINT),
    ("cv2", lazy.OPENCV_HINT),
    ("onnxruntime", lazy.ONNXRUNTIME_HINT),
    ("tensorrt", lazy.TENSORRT_HINT),
    ("pycuda.driver", lazy.PYCUDA_HINT),
])
def test_each_library_has_its_one_hint(name, hint):
    assert lazy.install_hint(name) == hint


def test_a_missing_module_names_itself_and_the_fix(monkeypatch):
    # numpy and cv2 are installed here: hide them so the real refusal path runs.
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingDependencyError) as info:
        lazy.require("numpy")
    message = str(info.value)
    assert message.startswith("numpy is not installed (")
    assert message.endswith("Install it: " + lazy.NUMPY_HINT)
    assert info.value.exit_code == 2


def test_unknown_library_gets_a_pip_hint_and_an_override_wins():
    with pytest.raises(MissingDependencyError, match=r"Install it: pip install no_such_module_xyz$"):
        lazy.require("no_such_module_xyz.sub")
    with pytest.raises(MissingDependencyError, match=r"Install it: apt install something$"):
        lazy.require("no_such_module_xyz", "apt install something")


def test_edge_errors_no_longer_offers_a_second_helper():
    """One lazy-import helper: the transitional names in edge.errors are gone."""
    from edge import errors

    assert not hasattr(errors, "require")
    assert not hasattr(errors, "require_cv2")
