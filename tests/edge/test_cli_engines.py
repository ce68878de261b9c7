"""``medkiosk export engine|verify|engines`` run from ``edge`` alone: no ``export``, no torch.

Real subprocesses of the console entry with ``export`` and ``torch`` made unimportable (as on a
Jetson that has only the device code); TensorRT is not installed here, so the commands that need it
must say what to install. The engine logic itself is tested in tests/edge/tensorrt_tests/.
"""

import os
import subprocess
import sys

from edge.commands import engines
from edge.config import SCHEMA, load_config
from edge.quality import QualityThresholds
from edge.tensorrt import cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE_ONLY = ("import sys\nsys.modules['export'] = None\nsys.modules['torch'] = None\n"
               "sys.modules['training'] = None\nfrom edge.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def _device_medkiosk(*argv, **env):
    environment = dict(os.environ, PYTHONPATH=ROOT, **env)
    process = subprocess.Popen([sys.executable, "-c", DEVICE_ONLY] + list(argv), cwd=ROOT, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def test_engines_runs_without_the_export_package(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    code, out, err = _device_medkiosk("export", "engines", "--models", str(models), "--cache",
                                      str(tmp_path / "cache"))
    assert code == 0, err
    assert out.splitlines()[-1] == "engines: 0 up to date, 0 built, 0 failed"


def test_engine_and_verify_without_tensorrt_say_what_to_install(tiny_bundle, tmp_path):
    for command in ("engine", "verify"):
        code, out, err = _device_medkiosk("export", command, tiny_bundle, "--cache", str(tmp_path / "c"))
        assert code == 2, (command, out, err)
        assert err.startswith("medkiosk: error: tensorrt is not installed") and "Traceback" not in err
        assert "python3-libnvinfer" in err and err.count("\n") == 1


def test_a_missing_models_folder_is_one_line(tmp_path):
    code, _out, err = _device_medkiosk("export", "engines", "--models", str(tmp_path / "nope"))
    assert code == 2 and "models folder" in err and "Fix: pass --models DIR" in err


def test_cache_default_comes_from_the_environment_then_the_one_default(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENGINE_CACHE_ENV, raising=False)
    args = engines.build_parser().parse_args(["export", "verify", "b"])
    assert args.cache == cache.DEFAULT_ENGINE_CACHE == "/var/lib/medkiosk/engines"
    assert SCHEMA["kiosk"]["engine_cache"][0] == cache.DEFAULT_ENGINE_CACHE
    monkeypatch.setenv(cache.ENGINE_CACHE_ENV, str(tmp_path))
    args = engines.build_parser().parse_args(["export", "engines", "--models", "m"])
    assert args.cache == str(tmp_path) and args.precision == "fp16" and args.handler is engines.cmd_engines


def test_only_the_device_subcommands_are_routed_here():
    assert engines.handles(["export", "engine", "b"]) and engines.handles(["export", "engines"])
    assert engines.handles(["export", "verify", "b"])
    for argv in (["export", "onnx", "ck.pt"], ["export", "compare"], ["export"], ["engine"], []):
        assert not engines.handles(argv), argv


def test_config_quality_defaults_are_the_quality_gates_own():
    config = load_config(use_default_path=False)
    gate = QualityThresholds().to_dict()
    assert {key: config.quality[key] for key in config.quality} == {key: gate[key] for key in config.quality}
    assert config.quality["blur_threshold"] == 60.0  # the documented default (config/medkiosk.conf)


def test_engine_and_verify_share_the_bundle_arguments():
    parser = engines.build_parser()
    for command in ("engine", "verify"):
        args = parser.parse_args(["export", command, "b", "--calib", "c", "--cache", "k",
                                  "--precision", "int8"])
        assert (args.bundle, args.calib, args.cache, args.precision) == ("b", "c", "k", "int8")
        assert parser.parse_args(["export", command, "b"]).cache == cache.default_cache_dir()
