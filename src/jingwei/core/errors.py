"""Errors a service raises; the API turns each into `{"code", "message", "field"}` with its status."""

from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be carried out as asked. The message is for people (Chinese)."""

    status = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def error_list(self) -> list[dict[str, str]] | None:
        """Every mistake, for an error that found several at once (a form): the API sends them
        as `errors: [{field, code, message}]` beside the first."""
        return None


class Invalid(DomainError):
    """A value the schema cannot express as wrong (e.g. null for a field that must stay filled)."""

    status = 422
    default_code = "invalid"


class NotFound(DomainError):
    """Absent or outside the actor's tenant or scope: the two are indistinguishable on purpose."""

    status = 404
    default_code = "not_found"


class Forbidden(DomainError):
    status = 403
    default_code = "forbidden"


class Conflict(DomainError):
    status = 409
    default_code = "conflict"


class Unauthenticated(DomainError):
    status = 401
    default_code = "unauthenticated"


class Throttled(DomainError):
    status = 429
    default_code = "throttled"
