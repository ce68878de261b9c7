"""Errors of the export side (Python 3.6 compatible: the engine code raises them on the device)."""

from edge.errors import MedkioskError


class ExportError(MedkioskError):
    """Exporting a checkpoint to an ONNX bundle failed; no bundle was written."""


class ParityError(ExportError):
    """The exported graph does not compute what the PyTorch model computes."""


class EngineError(MedkioskError):
    """A TensorRT engine cannot be built, found, loaded or run."""
