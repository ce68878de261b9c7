"""Workstation export errors (checkpoint -> ONNX bundle); engine errors are ``edge.errors.EngineError``."""

from edge.errors import MedkioskError


class ExportError(MedkioskError):
    """Exporting a checkpoint to an ONNX bundle failed; no bundle was written."""


class ParityError(ExportError):
    """The exported graph does not compute what the PyTorch model computes."""
