"""Idempotency keys for every write an integration may retry.

A client sends `Idempotency-Key: <unique string>` with a POST/PUT/PATCH/DELETE. The first request
claims the key (a committed row) before the operation runs; the middleware stores the response
when it finishes. A retry with the same key and body gets the stored response (header
`Idempotent-Replayed: true`) and nothing runs twice; the same key with a different body is a 422; a
retry while the first is still running is a 409. A 5xx frees the key so a retry can run.

Where at-least-once remains: if the process dies after the operation committed but before its
response was stored, the claim is left pending; after IDEMPOTENCY_STALE_SECONDS a retry may take it
over and run the operation again. Keys are kept IDEMPOTENCY_TTL_SECONDS (default 24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .errors import Conflict, DomainError
from .models import IdempotencyKey

if TYPE_CHECKING:
    from jingwei.org.scope import Actor

HEADER = "Idempotency-Key"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Replay(Exception):
    def __init__(self, row: IdempotencyKey):
        self.row = row

    def response(self) -> HttpResponse:
        response = HttpResponse(
            bytes(self.row.response_body or b""),
            status=self.row.status_code or 200,
            content_type=self.row.content_type or "application/json",
        )
        response["Idempotent-Replayed"] = "true"
        return response


def _hash(request: HttpRequest) -> str:
    head = f"{request.method} {request.path}\n".encode()
    return hashlib.sha256(head + request.body).hexdigest()


def claim(request: HttpRequest, actor: Actor) -> None:
    """Claim the request's key for the actor, or raise Replay / Conflict / DomainError."""
    key = request.headers.get(HEADER, "").strip()
    if not key or request.method not in UNSAFE:
        return
    if len(key) > 200:
        raise DomainError("Idempotency-Key 不能超过 200 个字符", code="invalid", field=HEADER)
    now = timezone.now()
    digest = _hash(request)
    owned = IdempotencyKey.objects.filter(tenant_id=actor.tenant_id, employee_id=actor.employee_id)
    owned.filter(created_at__lt=now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)).delete()
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(
                tenant_id=actor.tenant_id,
                employee_id=actor.employee_id,
                key=key,
                method=request.method or "",
                path=request.path[:500],
                request_hash=digest,
                created_at=now,
            )
    except IntegrityError:
        row = owned.get(key=key)
        if row.request_hash != digest:
            raise DomainError(
                "同一个 Idempotency-Key 已用于另一个请求",
                code="idempotency_key_reused",
                field=HEADER,
            ) from None
        if row.completed_at is not None:
            raise Replay(row) from None
        stale = now - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
        # Take over an abandoned claim only if nobody else did meanwhile (guarded UPDATE).
        if row.created_at >= stale or not owned.filter(
            pk=row.pk, completed_at__isnull=True, created_at=row.created_at
        ).update(created_at=now):
            raise Conflict(
                "相同 Idempotency-Key 的请求正在处理，请稍后重试",
                code="idempotency_in_progress",
                field=HEADER,
            ) from None
    request._idempotency_row_id = row.pk  # type: ignore[attr-defined]


class IdempotencyMiddleware:
    """Stores the response of a claimed request; frees the claim on a server error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        row_id = getattr(request, "_idempotency_row_id", None)
        if row_id is None or response.get("Idempotent-Replayed"):
            return response
        if response.status_code >= 500 or response.streaming:
            IdempotencyKey.objects.filter(pk=row_id).delete()
        else:
            IdempotencyKey.objects.filter(pk=row_id).update(
                status_code=response.status_code,
                response_body=response.content,
                content_type=response.get("Content-Type", ""),
                completed_at=timezone.now(),
            )
        return response
