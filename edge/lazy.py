"""The one lazy-import helper: ``require("numpy")`` returns the module or says what to install.

Heavy or optional libraries (numpy, OpenCV, ONNX Runtime, TensorRT, pycuda) are imported when a
function needs them, never at module import, so ``medkiosk --help`` and the light commands start
fast and a missing library is one line naming the fix, not a traceback. Each library's install
hint is written once, in ``INSTALL_HINTS``. Python 3.6 compatible.
"""

import importlib

from edge.errors import MissingDependencyError

NUMPY_HINT = "pip install numpy (JetPack: apt install python3-numpy)"
OPENCV_HINT = ("on a Jetson install JetPack's OpenCV, built with GStreamer (sudo apt install nvidia-opencv, "
               "which provides libopencv-python; never pip's opencv-python over it); elsewhere "
               "pip install 'medkiosk[edge]'")
ONNXRUNTIME_HINT = ("on a Jetson install the onnxruntime-gpu wheel for your JetPack from the Jetson Zoo; "
                    "elsewhere pip install onnxruntime")
TENSORRT_HINT = ("TensorRT's Python bindings: on a Jetson they come with JetPack (apt install "
                 "python3-libnvinfer); elsewhere pip install tensorrt")
PYCUDA_HINT = ("pip3 install pycuda (on a Jetson with JetPack's CUDA on PATH: "
               "export PATH=/usr/local/cuda/bin:$PATH first)")

# module name -> what to install when it is missing (a submodule uses its top-level package's hint)
INSTALL_HINTS = {
    "numpy": NUMPY_HINT,
    "cv2": OPENCV_HINT,
    "onnxruntime": ONNXRUNTIME_HINT,
    "tensorrt": TENSORRT_HINT,
    "pycuda": PYCUDA_HINT,
}


def install_hint(module_name):
    """What to install to get ``module_name`` ("pip install NAME" for a library not in the table)."""
    top = module_name.split(".")[0]
    return INSTALL_HINTS.get(top) or "pip install {}".format(top)


def require(module_name, install=None):
    """Import ``module_name`` or raise MissingDependencyError naming it and what to install.

    ``install`` overrides the table's hint (for libraries only one command needs).
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError("{} is not installed ({}). Install it: {}".format(
            module_name, exc, install or install_hint(module_name))) from exc
