"""``medkiosk train`` / ``evaluate`` / ``data`` through the real entry point."""

import json
import os
import subprocess
import sys

import pytest

from edge.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code, **env):
    environment = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                          timeout=120)


def test_importing_the_cli_does_not_import_torch():
    completed = _python("import sys, training.cli, training; print('torch' in sys.modules)")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == b"False"


def test_missing_torch_is_one_line_naming_the_extra():
    # torch is hidden from this interpreter (sys.modules entry None makes `import torch` fail).
    completed = _python("import sys; sys.modules['torch'] = None\nfrom edge.cli import main\n"
                        "sys.exit(main(['train', '--data', 'x', '--out', 'y']))")
    assert completed.returncode == 2
    assert b"pip install 'medkiosk[train]'" in completed.stderr
    assert b"Traceback" not in completed.stderr


def test_train_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data", "--arch", "--epochs", "--out", "--resume", "--balance", "--no-pretrained",
                   "--nproc-per-node", "--split-file", "--csv", "--module"):
        assert option in out


def test_data_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0
    assert "split" in capsys.readouterr().out


torch = pytest.importorskip("torch")


@pytest.mark.torch
def test_list_archs(capsys):
    from training.registry import ARCHITECTURES

    assert main(["train", "--list-archs"]) == 0
    out = capsys.readouterr().out
    for name in ARCHITECTURES:
        assert name in out


@pytest.mark.torch
def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-pretrained"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("medkiosk: error: data folder") and err.count("\n") == 1
    assert main(["evaluate", str(tmp_path / "no-run")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from training.synth import generate_dataset

    data = str(tmp_path_factory.mktemp("cli") / "data")
    generate_dataset(data, num_classes=3, per_class=10, size=32, seed=3)
    return data


@pytest.mark.torch
def test_pretrained_weights_missing_is_refused_not_downgraded(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))
    code = main(["train", "--data", tiny_data, "--out", str(tmp_path / "run"), "--arch", "mobilenet_v3_small",
                 "--image-size", "32", "--epochs", "1", "--workers", "0", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--no-pretrained" in err and "not on this machine" in err
    assert not os.path.exists(str(tmp_path / "run" / "best.pt"))


@pytest.mark.torch
def test_train_then_evaluate_from_the_command_line(tiny_data, tmp_path, capsys):
    run = str(tmp_path / "run")
    code = main(["train", "--data", tiny_data, "--out", run, "--arch", "mobilenet_v3_small",
                 "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0",
                 "--no-pretrained", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "best checkpoint: " + os.path.join(run, "best.pt") in capsys.readouterr().out
    code = main(["evaluate", run, "--split", "val", "--bootstrap", "0", "--workers", "0", "--no-progress",
                 "--coverage", "0.8", "--set-threshold"])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and os.path.join(run, "eval-val", "report.md") in out
    for name in ("report.md", "metrics.json", "roc.png", "confusion.png", "reliability.png"):
        assert os.path.isfile(os.path.join(run, "eval-val", name)), name
    from training.checkpoint import load_checkpoint

    with open(os.path.join(run, "eval-val", "metrics.json")) as handle:
        threshold = json.load(handle)["abstain"]["for_target_coverage"]["threshold"]
    stored = load_checkpoint(os.path.join(run, "best.pt")).description.abstain_threshold
    assert stored == pytest.approx(threshold)
    # Any class folder can be evaluated, not only the run's own split.
    code = main(["evaluate", run, "--data", tiny_data, "--out", str(tmp_path / "all"), "--bootstrap", "0",
                 "--workers", "0", "--no-progress"])
    assert code == 0
    with open(str(tmp_path / "all" / "metrics.json")) as handle:
        assert json.load(handle)["cases"] == 30
