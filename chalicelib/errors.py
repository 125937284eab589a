"""Domain errors. Entry points map them to answers; nothing below them knows HTTP."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a caller is meant to see."""

    code = "error"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ValidationFailed(ServiceError):
    code = "validation_error"


class BadRequest(ServiceError):
    code = "bad_request"


class NotFound(ServiceError):
    code = "not_found"


class Conflict(ServiceError):
    code = "conflict"


class Unauthorized(ServiceError):
    code = "unauthorized"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"


class InvalidCursor(ValueError):
    """A page cursor the list did not hand out (forged, damaged, or from another list).

    Storage raises it with no wording of its own: the HTTP edge answers it as a 400 that
    names the query parameter.
    """
