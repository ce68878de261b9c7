"""The TensorRT names each code path uses exist in the real APIs (and the stand-ins offer nothing more).

(a) 10.x and 11.x: the real ``tensorrt-cu12-bindings`` wheels from PyPI (latest 10.x and 11.x),
downloaded once into a cache folder; the identifiers in their compiled module and Python files
are compared with ``NAMES_TRT10`` and the stand-in surfaces, without loading the library.
(b) 8.2 (Jetson Nano): the checked-in ``edge/tensorrt/trt82_names.txt``, written from NVIDIA's 8.2
API reference.
"""

import glob
import os
import re
import subprocess
import sys
import zipfile

import pytest

from edge.tensorrt.trt_compat import NAMES_CALIBRATION, NAMES_TRT8, NAMES_TRT10
from tests.edge.tensorrt_tests.standins import SURFACES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CACHE_ENV = "MEDKIOSK_TRT_WHEEL_CACHE"
WHEELS = {"10": "tensorrt-cu12-bindings>=10,<11", "11": "tensorrt-cu12-bindings>=11,<12"}
TRT82_LIST = os.path.join(ROOT, "edge", "tensorrt", "trt82_names.txt")


def _wheel_names(major):
    cache = os.environ.get(CACHE_ENV) or os.path.join(ROOT, "build", "trt-wheels")
    folder = os.path.join(cache, "trt" + major)
    wheels = glob.glob(os.path.join(folder, "tensorrt_cu12_bindings-*.whl"))
    if not wheels:
        os.makedirs(folder, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "-d", folder, WHEELS[major]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        wheels = glob.glob(os.path.join(folder, "tensorrt_cu12_bindings-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip("cannot download {} from PyPI (needed to check TensorRT names): {}".format(
                WHEELS[major], (result.stderr or result.stdout).strip().splitlines()[-1:]))
    strings = set()
    with zipfile.ZipFile(sorted(wheels)[-1]) as wheel:
        for member in wheel.namelist():
            data = wheel.read(member)
            if member.endswith(".so") or ".so." in member:
                strings.update(s.decode("latin-1") for s in data.split(b"\0") if s)
            elif member.endswith(".py"):
                strings.update(t.decode() for t in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", data))
    names = ApiStrings(strings)
    assert "build_serialized_network" in names, "the scan found no TensorRT API names in " + wheels[0]
    return names


class ApiStrings(object):
    """The C strings of a compiled module: a registered name is a whole string, or the tail of a
    longer one (the linker merges "Runtime" into "IRuntime"). Docstrings mentioning a name do not
    count, since they do not end with it."""

    def __init__(self, strings):
        self.strings = strings
        self.tails = {}

    def __contains__(self, name):
        if name not in self.tails:
            self.tails[name] = name in self.strings or any(s.endswith(name) for s in self.strings)
        return self.tails[name]

    def missing(self, names):
        return sorted(n for n in names if n not in self)


@pytest.fixture(scope="module")
def trt10():
    return _wheel_names("10")


@pytest.fixture(scope="module")
def trt11():
    return _wheel_names("11")


def _trt82():
    names, absent, section = set(), set(), None
    with open(TRT82_LIST) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif line:
                (absent if section == "absent" else names).add(line)
    return names, absent


def test_trt10_path_names_exist_in_the_real_10x_bindings(trt10):
    assert trt10.missing(NAMES_TRT10) == []
    assert trt10.missing(SURFACES["10.16.1"]) == []
    # And the bindings-era API really is gone, so only feature detection can pick the right path.
    gone = ("num_bindings", "get_binding_name", "binding_is_input", "execute_async_v2", "max_workspace_size",
            "build_engine")
    assert trt10.missing(gone) == sorted(gone)


def test_trt11_dropped_calibration_so_int8_needs_qdq(trt11):
    assert trt11.missing(NAMES_CALIBRATION) == sorted(NAMES_CALIBRATION)
    gone = ("EXPLICIT_BATCH", "platform_has_fast_fp16", "platform_has_fast_int8")
    assert trt11.missing(gone) == sorted(gone)
    assert trt11.missing(SURFACES["11.4.0"]) == []
    assert trt11.missing(NAMES_TRT10 - NAMES_CALIBRATION - set(gone)) == []


def test_trt82_path_names_are_in_the_82_list():
    names, absent = _trt82()
    assert sorted(NAMES_TRT8 - names) == []
    assert sorted(SURFACES["8.2.1"] - names) == []
    assert sorted(NAMES_TRT8 & absent) == [] and sorted(SURFACES["8.2.1"] & absent) == []
    # The named-tensor API the 10.x path needs is not there on the Nano.
    assert {"execute_async_v3", "num_io_tensors", "set_memory_pool_limit"} <= absent
