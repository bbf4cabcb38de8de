"""The few HTTP calls the channels make, on the standard library (urllib).

Every call has a timeout and never follows redirects: a provider endpoint that redirects is
misconfigured, and following a webhook's redirect would let a tenant's URL send our signed body
somewhere else. An HTTP error status is an answer, not an exception: the caller decides what a
403 or a 503 means for its provider. Only "no answer at all" (refused, reset, timed out, DNS)
raises `TransportError`, which every channel treats as worth another attempt.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

USER_AGENT = "Jingwei-Notify/1.0"
# Provider answers are small JSON documents; a body larger than this is not one of them.
MAX_RESPONSE_BYTES = 1024 * 1024


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, timeout, name resolution, TLS handshake."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML error page from a proxy)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect())


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (scheme checked)
    req.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(MAX_RESPONSE_BYTES), _headers(resp.headers))
    except urllib.error.HTTPError as exc:
        # 4xx/5xx (and the 3xx we refuse to follow) still carry the provider's error document.
        try:
            data = exc.read(MAX_RESPONSE_BYTES)
        except OSError:
            data = b""
        finally:
            exc.close()
        return Response(exc.code, data, _headers(exc.headers))
    except urllib.error.URLError as exc:
        raise TransportError(_reason(exc.reason)) from exc
    except TimeoutError as exc:
        raise TransportError("超时未响应") from exc
    except OSError as exc:  # a reset while reading the body, an incomplete read
        raise TransportError(_reason(exc)) from exc


def _headers(message: Any) -> dict[str, str]:
    """Header names lower-cased: HTTP header names are case-insensitive."""
    return {k.lower(): v for k, v in message.items()} if message is not None else {}


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError | socket.timeout):
        return "超时未响应"
    if isinstance(reason, ConnectionRefusedError):
        return "连接被拒绝"
    return str(reason) or reason.__class__.__name__


def post_json(
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return post_bytes(
        url, body, content_type="application/json; charset=utf-8", headers=headers, timeout=timeout
    )


def post_bytes(
    url: str,
    body: bytes,
    *,
    content_type: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    return request(
        "POST",
        url,
        body=body,
        headers={"Content-Type": content_type, **(headers or {})},
        timeout=timeout,
    )


def post_form(
    url: str, body: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> Response:
    """POST an already encoded application/x-www-form-urlencoded body (the caller encodes it:
    signed requests must send exactly the bytes they signed)."""
    return post_bytes(
        url,
        body.encode("ascii"),
        content_type="application/x-www-form-urlencoded; charset=utf-8",
        headers=headers,
        timeout=timeout,
    )


def get(url: str, *, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Response:
    if params:
        url = with_query(url, params)
    return request("GET", url, timeout=timeout)


def with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to whatever query it already has."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode(params)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urllib.parse.urlunsplit(parts._replace(query=joined))


def join(base: str, path: str) -> str:
    """`base` (with or without a trailing slash, possibly with a path prefix) + `path`."""
    return base.rstrip("/") + "/" + path.lstrip("/")
