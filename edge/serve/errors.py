"""The service's errors: MedkioskError subclasses that carry their HTTP status and a stable code."""

from edge.errors import MedkioskError


class ServeError(MedkioskError):
    """A request the service refuses; ``status`` is the HTTP status, ``code`` a stable machine word."""

    status = 400
    code = "bad_request"

    def __init__(self, message, status=None, code=None, retry_after=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def to_dict(self):
        return {"error": {"code": self.code, "message": str(self)}}


class AuthError(ServeError):
    """Missing, wrong or expired token or pairing code (401)."""

    status = 401
    code = "unauthorized"


class RateLimited(ServeError):
    """Too many requests from one device or address (429)."""

    status = 429
    code = "rate_limited"


class UploadError(ServeError):
    """An upload that is too big, not an image, or over the pixel limit (400/413/415)."""

    code = "bad_upload"
