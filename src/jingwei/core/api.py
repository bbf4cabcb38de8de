"""API conventions every module reuses: input schemas that refuse unknown fields, the error
shape `{"code", "message", "field"}`, pagination, and the exception handlers that produce them."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import LimitOffsetPagination
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from jingwei.org.scope import Actor

from .errors import DomainError
from .idempotency import Replay


class AuthedRequest(HttpRequest):
    actor: Actor


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def refuse_nul(value: Any) -> Any:
    """PostgreSQL can neither store nor compare text holding NUL: refuse it as input (else a 500).
    Structured values (conditions, forms) are checked deeper by their own checkers, which name
    the exact place; free-form JSON without one uses `refuse_nul_anywhere`."""
    if isinstance(value, str) and "\x00" in value:
        raise PydanticCustomError("string_nul", "text must not contain NUL")
    return value


def refuse_nul_anywhere(value: Any) -> Any:
    """`refuse_nul` for free-form JSON (an event payload): PostgreSQL's jsonb cannot keep NUL in
    any string of it, object keys included."""
    if _holds_nul(value):
        raise PydanticCustomError("string_nul", "text must not contain NUL")
    return value


def _takes_int(annotation: Any) -> bool:
    return annotation is int or int in get_args(annotation)


class In(Schema):
    """Request bodies: an unknown field is an error naming the field, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def refuse_nul_characters(cls, value: Any) -> Any:
        return refuse_nul(value)

    @field_validator("*", mode="before")
    @classmethod
    def refuse_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON true is not the number 1 (pydantic's lax mode would take it as one).
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _takes_int(field.annotation):
            raise PydanticCustomError("int_type", "a number is required, not true/false")
        return value


class Filters(Schema):
    """Query-string filters: text is searched in the database, so NUL is refused here too."""

    @field_validator("*")
    @classmethod
    def refuse_nul_characters(cls, value: Any) -> Any:
        return refuse_nul(value)


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _moment_text(value: Any) -> Any:
    # A number is not a date (pydantic's lax mode would read it as Unix seconds).
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        return value
    raise PydanticCustomError("datetime_type", "an ISO 8601 date-time is required")


def _moment_in_range(value: datetime) -> datetime:
    # SQLite stores datetimes as text and fails on years its date functions cannot shift.
    if value.year < 1900 or value.year > 9000:
        raise PydanticCustomError("moment_range", "date out of range")
    # In UTC: PostgreSQL refuses offsets of ±16:00 and more, which ISO 8601 allows.
    return value.astimezone(UTC)


# Every datetime the API accepts: text with a time zone, within years the databases handle, in UTC.
Moment = Annotated[AwareDatetime, BeforeValidator(_moment_text), AfterValidator(_moment_in_range)]


def _known_time_zone(value: str) -> str:
    if value not in _time_zones():
        raise PydanticCustomError("time_zone", "unknown time zone")
    return value


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# An IANA time zone name such as Asia/Shanghai.
TimeZoneName = Annotated[str, AfterValidator(_known_time_zone)]

# A password is taken exactly as typed (no stripping of spaces).
Password = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=128),
    Field(json_schema_extra={"format": "password"}),
]


class ErrorOut(Schema):
    code: str
    message: str
    field: str | None = None


DB_INT_MAX = 2**63 - 1  # the largest value a BIGINT column (and SQLite's INTEGER) holds


class Page(LimitOffsetPagination):
    """`?limit=&offset=` → `{"items": [...], "count": N}`."""

    class Input(LimitOffsetPagination.Input):
        # Bounded so that OFFSET + LIMIT still fits the database's integer (else a 500).
        offset: int = Field(0, ge=0, le=DB_INT_MAX - settings.NINJA_PAGINATION_MAX_LIMIT)


def _error(
    api: NinjaAPI,
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    **extra: Any,
) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message, "field": field, **extra}
    return api.create_response(request, body, status=status)


_MESSAGES = {
    "missing": "必填",
    "extra_forbidden": "不认识的字段",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "string_type": "应为文本",
    "bool_parsing": "应为 true 或 false",
    "bool_type": "应为 true 或 false",
    "datetime_parsing": "应为带时区的日期时间（ISO 8601）",
    "datetime_from_date_parsing": "应为带时区的日期时间（ISO 8601）",
    "datetime_type": "应为带时区的日期时间（ISO 8601）",
    "timezone_aware": "应带时区",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_attributes_type": "应为 JSON 对象",
    "string_too_long": "太长",
    "string_too_short": "太短",
    "string_pattern_mismatch": "格式不正确",
    "time_zone": "不认识的时区（应为 IANA 名称，如 Asia/Shanghai）",
    "moment_range": "日期超出允许范围（1900—9000 年）",
    "string_nul": "不能包含 NUL 字符",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "greater_than_equal": "太小",
    "less_than_equal": "太大",
    "decimal_parsing": "应为数字",
    "value_error": "取值无效",
}


def _field_of(loc: list[Any] | tuple[Any, ...]) -> str:
    # Ninja locations look like ("body", "payload", "name") or ("query", "limit").
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "form", "file", "header", "cookie"):
        parts = parts[1:]
        if len(parts) > 1 and parts[0] in ("payload", "body", "data", "filters"):
            parts = parts[1:]
        elif loc[0] == "body" and parts in (["payload"], ["body"], ["data"]):
            parts = []  # the body as a whole (absent, or not a JSON object): not a Python name
    return ".".join(parts) or "body"


def install_error_handlers(api: NinjaAPI) -> None:
    def validation(request: HttpRequest, exc: Any) -> HttpResponse:
        errors = [
            {
                "field": _field_of(e.get("loc", ())),
                "code": e.get("type", "invalid"),
                "message": _MESSAGES.get(e.get("type", ""), "取值无效"),
            }
            for e in exc.errors
        ]
        first = errors[0] if errors else {"field": None, "message": "请求无效", "code": "invalid"}
        return _error(
            api,
            request,
            422,
            "validation_error",
            f"{first['field']}：{first['message']}",
            first["field"],
            errors=errors,
        )

    def domain(request: HttpRequest, exc: Any) -> HttpResponse:
        several = exc.error_list()
        extra = {"errors": several} if several else {}
        return _error(api, request, exc.status, exc.code, exc.message, exc.field, **extra)

    def http_error(request: HttpRequest, exc: Any) -> HttpResponse:
        if isinstance(exc, AuthenticationError):
            return _error(api, request, 401, "unauthenticated", "请先登录或提供 API 令牌")
        if exc.status_code == 400 and "parse" in str(exc).lower():
            return _error(api, request, 400, "malformed_json", "请求体不是合法的 JSON", "body")
        if exc.status_code == 429:
            return _error(api, request, 429, "throttled", "请求过于频繁，请稍后再试")
        return _error(api, request, exc.status_code, "http_error", str(exc))

    def not_found(request: HttpRequest, exc: Any) -> HttpResponse:
        return _error(api, request, 404, "not_found", "不存在")

    def unparsable(request: HttpRequest, exc: Any) -> HttpResponse:
        return _error(api, request, 400, "malformed_body", "请求体无法解析（请使用 JSON）", "body")

    def suspicious(request: HttpRequest, exc: Any) -> HttpResponse:
        if isinstance(exc, RequestDataTooBig):
            return _error(api, request, 413, "body_too_large", "请求体过大", "body")
        return _error(api, request, 400, "bad_request", "请求无效")

    def replay(request: HttpRequest, exc: Any) -> HttpResponse:
        stored: HttpResponse = exc.response()
        return stored

    api.add_exception_handler(Replay, replay)
    api.add_exception_handler(ValidationError, validation)
    api.add_exception_handler(DomainError, domain)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Http404, not_found)
    api.add_exception_handler(SuspiciousOperation, suspicious)
    # The CSRF check reads request.POST, which parses a multipart body before the view does.
    api.add_exception_handler(MultiPartParserError, unparsable)
