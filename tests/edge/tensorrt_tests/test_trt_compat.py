"""trt_compat dispatch against STAND-INS of the TensorRT 7.1 / 8.2 / 10.x / 11.x Python API surfaces.

TensorRT cannot run here. ``tests/edge/tensorrt_tests/standins.py`` implements each version's surface strictly
(anything else raises AttributeError) and "executes" engines with ONNX Runtime on FakeCuda memory,
so these tests check which API each version is driven through and that buffers and outputs are
wired correctly, with real ONNX models. They do not test TensorRT's numerics (see @pytest.mark.gpu).
"""

import os

import numpy as np
import pytest

from edge.errors import EngineError
from edge.onnx_info import onnx_op_types, read_onnx_info
from edge.tensorrt import trt_compat
from edge.tensorrt.runner import EngineRunner
from edge.tensorrt.trt_compat import NAMES_TRT7_BUILD, NAMES_TRT8, NAMES_TRT10, TensorRT
from tests.edge.tensorrt_tests.standins import FakeCuda, StandinTensorRT, evaluate_onnx

VERSIONS = ["7.1.3", "8.2.1", "10.16.1", "11.4.0"]
ALLOWED = {"7.1.3": NAMES_TRT8 | NAMES_TRT7_BUILD, "8.2.1": NAMES_TRT8, "10.16.1": NAMES_TRT10,
           "11.4.0": NAMES_TRT10}


@pytest.fixture(scope="module")
def onnx_models(request, tmp_path_factory):
    """A static-batch and a dynamic-batch tiny model exported by export_bundle (real ONNX files).

    Without torch (the Python 3.6 run) only the prebuilt test bundle's static model."""
    try:
        from tests.export.models import tiny_source
    except ImportError:
        return {"static": os.path.join(request.getfixturevalue("tiny_bundle"), "model.onnx"), "dynamic": None}
    from export.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("models")
    static = export_bundle(tiny_source(), str(root / "static"), golden=False)
    dynamic = export_bundle(tiny_source(), str(root / "dynamic"), golden=False, dynamic_batch=True)
    return {"static": static + "/model.onnx", "dynamic": dynamic + "/model.onnx"}


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _build(compat, data, precision="fp16", batch=1):
    trt = compat.trt
    logger = compat.logger()
    builder = trt.Builder(logger)
    network = compat.create_network(builder)
    compat.parse_onnx(network, logger, data)
    config = builder.create_builder_config()
    compat.set_workspace(config, 64 << 20)
    compat.set_precision_flag(config, precision)
    compat.add_batch_profile(builder, network, config, batch)
    return compat.build_serialized(builder, network, config)


def _onnxruntime(path, batch):
    """The model's own output: ONNX Runtime, or the numpy evaluator where it is absent (JetPack 4.6)."""
    return evaluate_onnx(_read(path), ["probabilities"], {"image": batch})[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_build_load_and_run_on_each_surface(version, onnx_models):
    cuda = FakeCuda()
    trt = StandinTensorRT(version, memory=cuda)
    compat = TensorRT(trt)
    blob = _build(compat, _read(onnx_models["static"]), precision="fp16")
    header = trt._builds[-1]
    assert header["flags"] == ["FP16"]
    assert header["workspace"] == 64 << 20
    # 7.x/8.x need EXPLICIT_BATCH; 10.x still accepts it (a no-op); 11.x has no such flag.
    assert header["explicit_batch_flag"] is (version != "11.4.0")
    runner = EngineRunner(blob, compat=compat, cuda=cuda)
    info = read_onnx_info(onnx_models["static"])
    shape = info.inputs[0]["shape"]
    assert [t.to_dict() for t in runner.tensors] == [
        {"name": "image", "is_input": True, "shape": shape, "dtype": "float32"},
        {"name": "probabilities", "is_input": False, "shape": info.outputs[0]["shape"], "dtype": "float32"}]
    batch = np.random.RandomState(1).uniform(0, 255, shape).astype(np.float32)
    probs = runner.run(batch)["probabilities"]
    assert np.abs(probs - _onnxruntime(onnx_models["static"], batch)).max() == 0.0
    expected_api = "v3" if version in ("10.16.1", "11.4.0") else "v2"
    assert [e["api"] for e in trt._executions] == [expected_api]
    assert trt._executions[0]["stream"] == runner.stream.handle
    # Every TensorRT name the code touched is in that path's list (and the stand-in's surface).
    assert trt._used <= ALLOWED[version], sorted(trt._used - ALLOWED[version])


@pytest.mark.parametrize("version", ["8.2.1", "10.16.1"])
def test_dynamic_batch_profile_and_input_shape(version, onnx_models):
    if onnx_models["dynamic"] is None:
        pytest.skip("needs torch to export a dynamic-batch model")
    cuda = FakeCuda()
    trt = StandinTensorRT(version, memory=cuda)
    compat = TensorRT(trt)
    blob = _build(compat, _read(onnx_models["dynamic"]), precision="fp32", batch=3)
    assert trt._builds[-1]["profiles"] == [{"image": [[1, 3, 32, 32], [3, 3, 32, 32], [3, 3, 32, 32]]}]
    runner = EngineRunner(blob, compat=compat, cuda=cuda, batch=3)
    assert runner.shapes["image"] == (3, 3, 32, 32) and runner.shapes["probabilities"] == (3, 4)
    batch = np.random.RandomState(2).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32)
    assert np.abs(runner.run(batch)["probabilities"] - _onnxruntime(onnx_models["dynamic"], batch)).max() == 0
    assert ("set_input_shape" if version == "10.16.1" else "set_binding_shape") in trt._used
    with pytest.raises(EngineError, match="expects"):
        runner.run(batch[:1])


def test_features_that_differ():
    assert TensorRT(StandinTensorRT("8.2.1")).calibrator_base() is not None
    assert TensorRT(StandinTensorRT("10.16.1")).calibrator_base() is not None
    assert TensorRT(StandinTensorRT("11.4.0")).calibrator_base() is None
    for version, expected in (("8.2.1", True), ("11.4.0", None)):
        trt = StandinTensorRT(version)
        caps = TensorRT(trt).platform_caps(trt.Builder(None))
        assert caps == {"fast_fp16": expected, "fast_int8": expected}
    nano = StandinTensorRT("8.2.1", gpu={"fast_int8": False})
    assert TensorRT(nano).platform_caps(nano.Builder(None)) == {"fast_fp16": True, "fast_int8": False}


def test_strict_standin_rejects_other_versions_api():
    """The stand-ins are strict: a 10.x-only call on the 8.2 surface fails like the real thing."""
    trt = StandinTensorRT("8.2.1")
    config = trt.Builder(None).create_builder_config()
    assert not hasattr(config, "set_memory_pool_limit")
    with pytest.raises(AttributeError, match="has no attribute 'set_memory_pool_limit'"):
        getattr(config, "set_memory_pool_limit")  # noqa: B009 - the access itself is the test
    assert not hasattr(StandinTensorRT("10.16.1").Builder(None).create_builder_config(), "max_workspace_size")


def test_parser_errors_are_reported(onnx_models):
    compat = TensorRT(StandinTensorRT("8.2.1"))
    with pytest.raises(EngineError) as info:
        _build(compat, b"this is not an onnx file")
    assert "cannot parse model.onnx" in str(info.value) and "Failed to parse ONNX model" in str(info.value)
    assert "--opset" in str(info.value)


def test_foreign_engine_is_refused_cleanly(onnx_models):
    cuda = FakeCuda()
    old = TensorRT(StandinTensorRT("8.2.1", memory=cuda))
    blob = _build(old, _read(onnx_models["static"]))
    new_trt = StandinTensorRT("10.16.1", memory=cuda)
    with pytest.raises(EngineError, match="rebuild it"):
        EngineRunner(blob, compat=TensorRT(new_trt), cuda=cuda)
    assert new_trt._foreign_loads == 1  # the cache layer exists so that this never happens (see cache tests)


def test_fp16_flag_missing_is_a_clear_refusal():
    trt = StandinTensorRT("11.4.0")
    compat = TensorRT(trt)
    object.__setattr__(trt, "BuilderFlag", type(trt.BuilderFlag)(trt, {"INT8": 102}))
    with pytest.raises(EngineError, match="strongly typed"):
        compat.set_precision_flag(trt.Builder(None).create_builder_config(), "fp16")


def test_qdq_detection(onnx_models):
    assert not trt_compat.has_qdq(_read(onnx_models["static"]))
    assert "Conv" in onnx_op_types(_read(onnx_models["static"]))
