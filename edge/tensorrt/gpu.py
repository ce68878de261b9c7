"""Which GPU is this? (name and sm_XY for engine cache keys; Python 3.6, no torch)."""

import os
import subprocess

from edge.errors import EngineError

JETSON_MODEL = "/proc/device-tree/model"


def _from_pycuda(cuda):
    cuda.init()
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return {"name": device.name(), "sm": "sm_{}{}".format(major, minor), "source": "cuda"}


def _from_nvidia_smi():
    out = subprocess.check_output(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                  stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)
    name, _sep, cap = out.splitlines()[0].partition(",")
    cap = cap.strip()
    return {"name": name.strip(), "sm": "sm_" + cap.replace(".", "") if cap else None, "source": "nvidia-smi"}


def _from_jetson_model(path=JETSON_MODEL):
    with open(path, "rb") as handle:
        model = handle.read().rstrip(b"\x00").decode("utf-8", "replace").strip()
    return {"name": model, "sm": None, "source": "device-tree"}


def detect_gpu(cuda=None):
    """{"name", "sm", "source"} of GPU 0: from CUDA (pycuda), nvidia-smi, or the Jetson model name."""
    problems = []
    if cuda is None:
        try:
            import pycuda.driver as cuda
        except ImportError as exc:
            problems.append("pycuda: {}".format(exc))
    if cuda is not None:
        try:
            return _from_pycuda(cuda)
        except Exception as exc:  # pycuda raises its own LogicError/RuntimeError family
            problems.append("CUDA: {}".format(exc))
    try:
        return _from_nvidia_smi()
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        problems.append("nvidia-smi: {}".format(exc))
    if os.path.exists(JETSON_MODEL):
        try:
            return _from_jetson_model()
        except OSError as exc:
            problems.append("{}: {}".format(JETSON_MODEL, exc))
    raise EngineError("cannot identify the GPU ({}). Fix: install pycuda, or check the NVIDIA driver "
                      "works (nvidia-smi / JetPack)".format("; ".join(problems)))
