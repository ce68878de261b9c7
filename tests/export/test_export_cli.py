"""``medkiosk export ...`` through the real console entry, in subprocesses where it matters."""

import os
import subprocess
import sys

import pytest

from export import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _medkiosk(*argv):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "edge"] + list(argv), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_parser_has_the_documented_commands():
    parser = cli.build_parser()
    args = parser.parse_args(["export", "onnx", "ck.pt", "--out", "b", "--fp16", "--dynamic-batch",
                              "--module-id", "chest", "--title", "Chest", "--version", "2.0.0",
                              "--samples", "imgs", "--opset", "12"])
    assert (args.checkpoint, args.out, args.fp16, args.dynamic_batch) == ("ck.pt", "b", True, True)
    assert args.opset == 12
    assert (args.module_id, args.title, args.version, args.samples) == ("chest", "Chest", "2.0.0", "imgs")
    args = parser.parse_args(["export", "compare", "b", "--images", "d", "--precisions", "fp32,fp16",
                              "--json", "o.json"])
    assert args.precisions == ["fp32", "fp16"] and args.json == "o.json"
    args = parser.parse_args(["export", "engine", "b", "--precision", "int8", "--calib", "c", "--cache", "x"])
    assert (args.precision, args.calib, args.cache) == ("int8", "c", "x")
    args = parser.parse_args(["export", "verify", "b", "--no-build"])
    assert args.no_build and args.precision == "fp16"
    args = parser.parse_args(["export", "engines", "--models", "m", "--cache", "c"])
    assert (args.models, args.cache) == ("m", "c")
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "compare", "b", "--images", "d", "--precisions", "fp8"])


def test_cli_module_is_light_at_import():
    code = ("import sys, export.cli; export.cli.build_parser(); "
            "heavy = ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'numpy'); "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_export_onnx_end_to_end_and_errors(tmp_path):
    pytest.importorskip("torch")
    from tests.export.models import tiny_description
    from training.checkpoint import build_net, make_checkpoint, save_checkpoint

    description = tiny_description(size=32).replace(arch="mobilenet_v3_small")
    checkpoint = str(tmp_path / "best.pt")
    save_checkpoint(checkpoint, make_checkpoint(build_net(description), description, 1, 0.5,
                                                module={"id": "demo", "title": "Demo module"}))
    out = str(tmp_path / "bundle")
    result = _medkiosk("export", "onnx", checkpoint, "--out", out, "--version", "1.2.3")
    assert result.returncode == 0, result.stderr
    assert "bundle demo@1.2.3+" in result.stdout and "top-1 agreement 100%" in result.stdout
    from edge.bundle import load_bundle

    assert load_bundle(out).title == "Demo module"
    missing = _medkiosk("export", "onnx", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("medkiosk: error: checkpoint") and "Traceback" not in missing.stderr
    assert not os.path.exists(str(tmp_path / "x"))
    bare = _medkiosk("export")
    assert bare.returncode == 2 and "onnx" in bare.stdout
