"""Multi-process training with torchrun (DDP): gloo on CPU, NCCL on CUDA.

Run as ``torchrun --nproc_per_node=N -m training.distributed --data DIR --out RUN ...`` (the same
options as ``medkiosk train``), or ``medkiosk train --nproc-per-node N ...`` which launches that.
Each rank reads its share of the training split (DistributedSampler); rank 0 alone writes the
split, checkpoints, metrics and calibration.
"""

import argparse
import os
import subprocess
import sys

from edge.errors import ConfigError


def backend_for(device):
    """gloo for CPU, nccl for CUDA."""
    return "nccl" if device == "cuda" else "gloo"


def _device_choice(config):
    import torch

    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def run_distributed(config):
    """Initialise the process group from torchrun's environment, train, tear down; return TrainResult."""
    import torch
    import torch.distributed as dist

    from training.train import train

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError("training.distributed must be started by torchrun (RANK/WORLD_SIZE are not set). "
                          "Fix: torchrun --nproc_per_node=N -m training.distributed ... or medkiosk train "
                          "--nproc-per-node N")
    device = _device_choice(config)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked but no CUDA GPU is usable here. Fix: --device cpu")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend_for(device))
    try:
        return train(config)
    finally:
        dist.destroy_process_group()


def launch(train_argv, nproc_per_node):
    """Run ``torch.distributed.run`` with this module and the train options; return its exit code."""
    if nproc_per_node < 1:
        raise ConfigError("--nproc-per-node must be >= 1, got {}".format(nproc_per_node))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node={}".format(nproc_per_node), "-m", "training.distributed"] + list(train_argv)
    return subprocess.call(command)


def main(argv=None):
    from edge.cliutil import run_guarded
    from training.train_args import add_train_arguments, set_threads, train_config

    parser = argparse.ArgumentParser(prog="training.distributed",
                                     description="DDP training under torchrun (options of medkiosk train)")
    add_train_arguments(parser)
    args = parser.parse_args(argv)

    def handler(parsed):
        set_threads(parsed)
        config = train_config(parsed)
        result = run_distributed(config)
        if int(os.environ.get("RANK", 0)) == 0:
            print("best checkpoint: {}".format(result.best_checkpoint))
        return 0

    return run_guarded(handler, args)


if __name__ == "__main__":
    sys.exit(main())
