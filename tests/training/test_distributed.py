"""DDP: torchrun with two CPU processes (gloo) trains a tiny run to completion; rank 0 writes the files."""

import csv
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from training.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from training.distributed import backend_for  # noqa: E402
from training.synth import generate_dataset  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_backend_choice():
    assert backend_for("cpu") == "gloo"
    assert backend_for("cuda") == "nccl"


def test_torchrun_two_cpu_processes_train_to_completion(tmp_path):
    data = str(tmp_path / "data")
    generate_dataset(data, num_classes=3, per_class=10, size=32, seed=2)
    run = str(tmp_path / "run")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training.distributed", "--data", data, "--out", run, "--arch", "mobilenet_v3_small",
               "--image-size", "32", "--batch-size", "4", "--epochs", "2", "--workers", "0",
               "--no-pretrained", "--no-progress", "--device", "cpu"]
    completed = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=300)
    output = completed.stdout.decode("utf-8", "replace")
    assert completed.returncode == 0, output
    # Only rank 0 logs and writes.
    assert output.count("epoch 2/2") == 1, output
    assert output.count("best checkpoint:") == 1, output
    written = sorted(n for n in os.listdir(run) if not n.endswith(".json"))
    assert written == ["best.pt", "last.pt", "metrics.csv"]
    with open(os.path.join(run, "metrics.csv")) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    best = read_checkpoint(os.path.join(run, "best.pt"))
    assert best["training"]["run"]["world_size"] == 2
    loaded = load_checkpoint(os.path.join(run, "best.pt"))
    with torch.no_grad():
        assert loaded.net(torch.rand(1, 3, 32, 32) * 255).shape == (1, 3)


def test_distributed_entry_refuses_to_run_outside_torchrun(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = ROOT
    completed = subprocess.run([sys.executable, "-m", "training.distributed", "--data", str(tmp_path),
                                "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True,
                               timeout=120)
    assert completed.returncode == 2
    assert b"torchrun" in completed.stderr and b"Traceback" not in completed.stderr
