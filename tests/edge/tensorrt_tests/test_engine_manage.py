"""Engine cache, builder, verification and rebuild, on STAND-INS of TensorRT and pycuda.

TensorRT and a GPU cannot exist here: ``tests/edge/tensorrt_tests/standins.py`` provides strict
stand-ins of the
TensorRT 8.2 / 10.x / 11.x API surfaces whose "engines" are evaluated with ONNX Runtime on fake
device memory. What is real: the bundles (exported by export_bundle), the ONNX files, the images,
the preprocessing, the cache files and sidecars, the comparisons. Real-GPU tests are marked gpu.
"""

import json
import os
import shutil

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.errors import EngineError
from edge.preprocess import load_image, preprocess
from edge.tensorrt import cache as engine_cache
from edge.tensorrt.manage import Device, ensure_engine, rebuild_engines, verify_bundle
from edge.tensorrt.trt_compat import NAMES_TRT8, NAMES_TRT10, TensorRT
from tests.edge.tensorrt_tests.standins import FakeCuda, StandinTensorRT
from tests.make_test_bundle import resign

NANO = {"name": "NVIDIA Tegra X1", "sm": "sm_53"}
ORIN = {"name": "Orin", "sm": "sm_87"}


@pytest.fixture(scope="module")
def bundle_dir(request, tmp_path_factory):
    """A tiny bundle exported here; without torch (the Python 3.6 run) the prebuilt test bundle."""
    try:
        from tests.export.models import tiny_source
    except ImportError:
        return request.getfixturevalue("tiny_bundle")
    from export.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("engine-bundles")
    return export_bundle(tiny_source(), str(root / "tiny"), module_id="tiny", title="Tiny")


def _device(version="8.2.1", gpu=NANO, **caps):
    cuda = FakeCuda()
    trt = StandinTensorRT(version, gpu=dict(caps, name=gpu["name"]), memory=cuda)
    return Device(compat=TensorRT(trt), gpu=gpu, cuda=cuda), trt


def test_cache_key_names_model_trt_gpu_precision_batch(bundle_dir):
    bundle = load_bundle(bundle_dir)
    path = engine_cache.engine_path("/c", "my module", bundle.sha256, "8.2.1", NANO, "fp16", 1)
    assert path == "/c/my-module/{}-trt8.2.1-nvidia-tegra-x1-fp16-b1.engine".format(bundle.sha256[:16])
    assert engine_cache.gpu_tag({"name": None, "sm": "sm_53"}) == "sm_53"
    with pytest.raises(EngineError, match="precision"):
        engine_cache.engine_filename(bundle.sha256, "8.2.1", NANO, "fp8")


def test_build_once_then_cached_with_full_sidecar(bundle_dir, tmp_path):
    device, trt = _device()
    cache = str(tmp_path / "cache")
    first = ensure_engine(bundle_dir, cache, precision="fp16", device=device)
    second = ensure_engine(bundle_dir, cache, precision="fp16", device=device)
    assert (first.action, second.action) == ("built", "cached") and first.path == second.path
    assert len(trt._builds) == 1 and trt._builds[0]["flags"] == ["FP16"]
    with open(first.path + ".json") as handle:
        sidecar = json.load(handle)
    bundle = load_bundle(bundle_dir)
    assert sidecar["model"] == bundle.description.to_dict()
    assert sidecar["onnx_sha256"] == bundle.sha256 and sidecar["tensorrt"] == "8.2.1"
    assert sidecar["gpu"] == NANO and sidecar["precision"] == "fp16" and sidecar["batch"] == 1
    for key in ("manifest_sha256", "engine_sha256", "built", "build_seconds", "builder_host", "build"):
        assert sidecar[key] not in (None, ""), key
    assert sidecar["build"]["timing_cache"]["saved_bytes"] > 0
    # The timing cache persists between builds and is loaded by the next one.
    rebuilt = ensure_engine(bundle_dir, cache, precision="fp16", force=True, device=device)
    assert rebuilt.build.timing_cache["loaded_bytes"] == sidecar["build"]["timing_cache"]["saved_bytes"]
    assert sorted(trt._used - NAMES_TRT8) == []


def test_other_trt_or_gpu_engines_are_stale_and_never_deserialised(bundle_dir, tmp_path):
    cache = str(tmp_path / "cache")
    nano, _trt = _device("8.2.1", NANO)
    built = ensure_engine(bundle_dir, cache, device=nano)
    bundle = load_bundle(bundle_dir)
    orin, orin_trt = _device("10.16.1", ORIN)
    lookup = engine_cache.find_engine(cache, bundle, "10.16.1", ORIN, "fp16")
    assert lookup.status == "missing"
    assert any("built with TensorRT 8.2.1" in o["why"] and "built for GPU nvidia-tegra-x1" in o["why"]
               for o in lookup.others)
    with pytest.raises(EngineError) as info:
        ensure_engine(bundle_dir, cache, device=orin, allow_build=False)
    assert "TensorRT 8.2.1" in str(info.value) and "medkiosk export engine" in str(info.value)
    assert "version tag" not in str(info.value)
    result = verify_bundle(bundle_dir, cache, device=orin)
    assert result["ok"] and result["engine_action"] == "built" and result["engine"] != built.path
    assert orin_trt._foreign_loads == 0


def test_renamed_foreign_engine_is_caught_by_its_sidecar(bundle_dir, tmp_path):
    """Someone copies a Nano engine under the Orin's file name: the sidecar check stops it."""
    cache = str(tmp_path / "cache")
    nano, _trt = _device("8.2.1", NANO)
    built = ensure_engine(bundle_dir, cache, device=nano)
    bundle = load_bundle(bundle_dir)
    target = engine_cache.engine_path(cache, bundle.module_id, bundle.sha256, "10.16.1", ORIN, "fp16")
    shutil.copy(built.path, target)
    shutil.copy(built.path + ".json", target + ".json")
    lookup = engine_cache.find_engine(cache, bundle, "10.16.1", ORIN, "fp16")
    assert lookup.status == "stale"
    assert "built with TensorRT 8.2.1 (this device needs 10.16.1)" in lookup.reasons
    with pytest.raises(EngineError, match="is stale"):
        engine_cache.read_engine(lookup)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-sidecar"])
def test_damaged_engines_are_stale(bundle_dir, tmp_path, damage):
    cache = str(tmp_path / "cache")
    device, trt = _device()
    built = ensure_engine(bundle_dir, cache, device=device)
    if damage == "no-sidecar":
        os.remove(built.path + ".json")
    else:
        with open(built.path, "r+b") as handle:
            if damage == "truncate":
                handle.truncate(100)
            else:
                handle.seek(200)
                handle.write(b"X")
    lookup = engine_cache.find_engine(cache, load_bundle(bundle_dir), "8.2.1", NANO, "fp16")
    assert lookup.status == "stale"
    why = {"truncate": "truncated", "flip": "corrupted", "no-sidecar": "interrupted"}[damage]
    assert why in lookup.explain()
    with pytest.raises(EngineError, match="no usable fp16 engine"):
        ensure_engine(bundle_dir, cache, device=device, allow_build=False)
    assert ensure_engine(bundle_dir, cache, device=device).action == "built"
    assert len(trt._builds) == 2


def test_precision_refusals_write_nothing(bundle_dir, tmp_path):
    cache = str(tmp_path / "cache")
    nano, _trt = _device("8.2.1", NANO, fast_int8=False)
    with pytest.raises(EngineError, match="no fast INT8"):
        ensure_engine(bundle_dir, cache, precision="int8", calib_dir=str(tmp_path), device=nano)
    slow, _trt = _device("8.2.1", NANO, fast_fp16=False)
    with pytest.raises(EngineError, match=r"this GPU has no fast FP16; use --precision fp32"):
        ensure_engine(bundle_dir, cache, precision="fp16", device=slow)
    new, _trt = _device("11.4.0", ORIN)
    with pytest.raises(EngineError, match="removed INT8 calibration"):
        ensure_engine(bundle_dir, cache, precision="int8", calib_dir=str(tmp_path), device=new)
    assert not any(name.endswith(".engine") for _r, _d, files in os.walk(cache) for name in files)
    # FP32 on the slow-FP16 GPU is what the user asks for explicitly, and works.
    assert ensure_engine(bundle_dir, cache, precision="fp32", device=slow).action == "built"


def _calibration_images(folder, count, seed=0):
    """``count`` random-texture PNGs (numpy 1.13-compatible: the JetPack 4.6 run has no default_rng)."""
    import cv2

    os.makedirs(folder)
    rng = np.random.RandomState(seed)
    paths = []
    for index in range(count):
        path = os.path.join(folder, "calib-{:02d}.png".format(index))
        cv2.imwrite(path, rng.randint(0, 256, (48 + index, 64, 3)).astype(np.uint8))
        paths.append(path)
    return paths


def test_int8_calibration_uses_the_runtime_preprocessing(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    calib = str(tmp_path / "calib")
    paths = _calibration_images(calib, 9, seed=3)
    cache = str(tmp_path / "cache")
    device, trt = _device("10.16.1", ORIN)
    result = ensure_engine(bundle_dir, cache, precision="int8", calib_dir=calib, device=device)
    assert trt._builds[-1]["flags"] == ["INT8"]
    assert result.build.calibration["images"] == 9 and result.build.calibration["batches"] == 9
    expected = [preprocess(load_image(p), bundle.description.input) for p in sorted(paths)]
    assert len(trt._calibration_batches) == 9
    for seen, want in zip(trt._calibration_batches, expected):
        assert np.array_equal(seen, want)
    calibration_cache = engine_cache.calibration_cache_path(cache, bundle, "10.16.1", ORIN)
    assert os.path.isfile(calibration_cache)
    again = ensure_engine(bundle_dir, cache, precision="int8", calib_dir=calib, device=device, force=True)
    assert again.build.calibration["cache_reused"] and trt._builds[-1]["calibration"]["from_cache"]
    assert sorted(trt._used - NAMES_TRT10) == []
    few = str(tmp_path / "few")
    _calibration_images(few, 3)
    with pytest.raises(EngineError, match="only 3 images .* at least 8"):
        ensure_engine(bundle_dir, str(tmp_path / "c2"), precision="int8", calib_dir=few, device=device)
    with pytest.raises(EngineError, match="does not exist"):
        ensure_engine(bundle_dir, str(tmp_path / "c2"), precision="int8", calib_dir=few + "-x", device=device)


@pytest.mark.parametrize("version", ["8.2.1", "10.16.1"])
def test_verify_passes_and_catches_a_wrong_expectation(bundle_dir, tmp_path, version):
    device, trt = _device(version, NANO if version == "8.2.1" else ORIN)
    cache = str(tmp_path / "cache")
    report = verify_bundle(bundle_dir, cache, precision="fp16", device=device)
    assert report["ok"], report["lines"]
    assert len(report["samples"]) == len(load_bundle(bundle_dir).golden_samples()) >= 2
    assert all(s["max_abs_diff"] <= 1e-6 for s in report["samples"])
    # A bundle whose expected outputs do not match what the engine computes fails verification.
    broken = str(tmp_path / "broken")
    shutil.copytree(bundle_dir, broken)
    expected_path = os.path.join(broken, "golden", "expected.json")
    with open(expected_path) as handle:
        expected = json.load(handle)
    first = expected["samples"][0]["probabilities"]
    expected["samples"][0]["probabilities"] = first[1:] + first[:1]
    with open(expected_path, "w") as handle:
        json.dump(expected, handle)
    report = verify_bundle(resign(broken), cache, precision="fp16", device=device)
    assert not report["ok"] and report["failures"] == 1
    count = len(report["samples"])
    assert report["lines"][0].startswith("FAIL")
    assert report["lines"][-1].endswith("{}/{} golden images match".format(count - 1, count))


def test_verify_without_golden_images_fails(tmp_path):
    pytest.importorskip("torch")
    from export.onnx_export import export_bundle
    from tests.export.models import tiny_source

    out = export_bundle(tiny_source(), str(tmp_path / "nogold"), golden=False)
    device, _trt = _device()
    report = verify_bundle(out, str(tmp_path / "cache"), device=device)
    assert not report["ok"] and "no golden images" in report["lines"][0]


def test_rebuild_engines_counts_failures(bundle_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundle_dir, str(models / "good"))
    shutil.copytree(bundle_dir, str(models / "tampered"))
    with open(str(models / "tampered" / "model.onnx"), "ab") as handle:
        handle.write(b"\0")
    (models / "not-a-bundle").mkdir()
    device, trt = _device()
    messages = []
    summary = rebuild_engines(str(models), str(tmp_path / "cache"), device=device, log=messages.append)
    assert (summary["bundles"], summary["built"], summary["fresh"], summary["failed"]) == (2, 1, 0, 1)
    assert "model_sha256" in summary["errors"][0]["error"]
    assert any(m.startswith("FAILED") for m in messages)
    summary = rebuild_engines(str(models), str(tmp_path / "cache"), device=device)
    assert (summary["built"], summary["fresh"], summary["failed"]) == (0, 1, 1)
    assert len(trt._builds) == 1


def test_cli_engine_commands_without_tensorrt_say_what_to_install(bundle_dir, tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    for argv in (["engine", bundle_dir], ["verify", bundle_dir], ["engines", "--models", str(tmp_path)]):
        command = [sys.executable, "-m", "edge", "export"] + argv + ["--cache", str(tmp_path / "c")]
        process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   universal_newlines=True)
        stdout, stderr = process.communicate(timeout=120)
        if argv[0] == "engines":
            # No bundles: nothing to build, so nothing needs TensorRT.
            assert process.returncode == 0 and "0 up to date, 0 built, 0 failed" in stdout
            continue
        assert process.returncode == 2, stderr
        assert "tensorrt is not installed" in stderr and "Traceback" not in stderr


@pytest.mark.gpu
def test_real_tensorrt_engine_verifies(bundle_dir, tmp_path):
    """On a device with TensorRT and pycuda: build, load and verify for real."""
    pytest.importorskip("tensorrt")
    pytest.importorskip("pycuda")
    report = verify_bundle(bundle_dir, str(tmp_path / "cache"), precision="fp16")
    assert report["ok"], report["lines"]


def test_rebuild_with_verify_fails_a_bundle_whose_golden_outputs_differ(bundle_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundle_dir, str(models / "good"))
    shutil.copytree(bundle_dir, str(models / "wrong-golden"))
    expected_path = str(models / "wrong-golden" / "golden" / "expected.json")
    with open(expected_path) as handle:
        expected = json.load(handle)
    for sample in expected["samples"]:
        sample["probabilities"] = sample["probabilities"][::-1]
    with open(expected_path, "w") as handle:
        json.dump(expected, handle)
    resign(str(models / "wrong-golden"))
    device, _trt = _device()
    summary = rebuild_engines(str(models), str(tmp_path / "cache"), device=device, verify=True)
    # Same model and module id: the second bundle finds the first one's engine in the cache.
    assert (summary["built"], summary["fresh"], summary["verified"], summary["failed"]) == (1, 1, 1, 1)
    assert "wrong-golden" in summary["errors"][0]["bundle"]
    assert summary["errors"][0]["error"].startswith("golden check failed")
