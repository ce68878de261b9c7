"""The project's one exception base class and its families.

Every error a user can meet names the problem and the fix; the CLI prints it on one line
instead of a traceback.
"""


class MedkioskError(Exception):
    """Base class of every error medkiosk raises on purpose."""

    exit_code = 2


class MissingDependencyError(MedkioskError):
    """A library the command needs is not installed; the message says what to install."""


class BundleError(MedkioskError):
    """A model bundle is missing, malformed, or does not match its model file."""

    def __init__(self, bundle, field, problem, fix):
        self.bundle = str(bundle)
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__("bundle {}: {}: {}. Fix: {}".format(self.bundle, field, problem, fix))


class ImageError(MedkioskError):
    """An input image is missing, unreadable or not an image."""


class BackendError(MedkioskError):
    """An inference backend cannot be created or failed to run."""


class SourceError(MedkioskError):
    """A frame source (camera, video file, folder) cannot be opened or read."""


class ConfigError(MedkioskError):
    """A configuration file or command-line value is invalid."""


OPENCV_HINT = ("on a Jetson install JetPack's OpenCV, built with GStreamer (sudo apt install nvidia-opencv, "
               "which provides libopencv-python; never pip's opencv-python over it); elsewhere "
               "pip install 'medkiosk[edge]'")


def require_cv2():
    """Import OpenCV or raise MissingDependencyError saying which OpenCV to install."""
    return require("cv2", OPENCV_HINT)


def require(module_name, install_hint):
    """Import a module by name or raise MissingDependencyError saying what to install."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(
            "{} is not installed ({}). Install it: {}".format(module_name, exc, install_hint)
        ) from exc
