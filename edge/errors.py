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


class EngineError(MedkioskError):
    """A TensorRT engine cannot be built, found, loaded or run."""


class DisplayError(MedkioskError):
    """The kiosk's screen cannot be measured, or its window cannot be made to fill it."""
