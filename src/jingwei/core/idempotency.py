"""Idempotency keys for every write an integration may retry.

A client sends `Idempotency-Key: <unique string>` with a POST/PUT/PATCH/DELETE. The first request
claims the key (a committed row) before the operation runs; the middleware stores the response
when it finishes. A retry with the same key and body gets the stored response (header
`Idempotent-Replayed: true`) and nothing runs twice; the same key with a different body is a 422; a
retry while the first is still running is a 409. A 5xx frees the key so a retry can run. A view
whose answer holds a secret shown only once calls `mark_unrepeatable(request)`: the key then keeps a
409 `idempotent_replay_unavailable` instead of the answer, so a retry never sees the secret.

Where at-least-once remains: if the process dies after the operation committed but before its
response was stored, the claim is left pending; after IDEMPOTENCY_STALE_SECONDS a retry may take it
over and run the operation again. Keys are kept IDEMPOTENCY_TTL_SECONDS (default 24 h): every claim
deletes up to SWEEP_BATCH expired keys, of any tenant, oldest first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.utils import timezone

from .errors import Conflict, DomainError
from .models import IdempotencyKey

if TYPE_CHECKING:
    from jingwei.org.scope import Actor

HEADER = "Idempotency-Key"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SWEEP_BATCH = 500
_UNREPEATABLE = "_idempotency_unrepeatable"


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


def mark_unrepeatable(request: HttpRequest) -> None:
    """Call from a view whose answer must not be kept (e.g. a secret shown once): a retry with the
    same key is then refused (409 idempotent_replay_unavailable) instead of replaying it."""
    setattr(request, _UNREPEATABLE, True)


def _hash(request: HttpRequest) -> str:
    digest = hashlib.sha256(f"{request.method} {request.get_full_path()}\n".encode())
    try:
        digest.update(request.body)
    except RawPostDataException:
        # A multipart upload already parsed (the session's CSRF check reads the form first):
        # the same fields and files, byte for byte, make the same request.
        for name, values in sorted(request.POST.lists()):
            digest.update(json.dumps([name, values], ensure_ascii=False).encode())
        for name, files in sorted(request.FILES.lists()):
            for upload in files:
                digest.update(json.dumps([name, upload.name, upload.size]).encode())
                for chunk in upload.chunks():
                    digest.update(chunk)
                upload.seek(0)
    return digest.hexdigest()


def _sweep_expired(now: datetime) -> None:
    """Delete up to SWEEP_BATCH expired keys of any tenant, so the table stays bounded."""
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
    with transaction.atomic():
        expired = IdempotencyKey.objects.filter(created_at__lt=cutoff).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            # Concurrent claims take disjoint rows instead of queueing or deadlocking on the same.
            expired = expired.select_for_update(skip_locked=True)
        pks = list(expired.values_list("pk", flat=True)[:SWEEP_BATCH])
        if pks:
            IdempotencyKey.objects.filter(pk__in=pks).delete()


def _in_progress() -> Conflict:
    return Conflict(
        "相同 Idempotency-Key 的请求正在处理，请稍后重试",
        code="idempotency_in_progress",
        field=HEADER,
    )


def claim(request: HttpRequest, actor: Actor) -> None:
    """Claim the request's key for the actor, or raise Replay / Conflict / DomainError."""
    key = request.headers.get(HEADER, "").strip()
    if not key or request.method not in UNSAFE:
        return
    if len(key) > 200:
        raise DomainError("Idempotency-Key 不能超过 200 个字符", code="invalid", field=HEADER)
    now = timezone.now()
    digest = _hash(request)
    _sweep_expired(now)
    owned = IdempotencyKey.objects.filter(tenant_id=actor.tenant_id, employee_id=actor.employee_id)
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
        row = _existing_claim(owned.filter(key=key), digest, now)
    request._idempotency_row_id = row.pk  # type: ignore[attr-defined]


def _existing_claim(
    same_key: QuerySet[IdempotencyKey], digest: str, now: datetime
) -> IdempotencyKey:
    """The key is taken: replay its answer, refuse, or take over an abandoned claim (returned)."""
    row = same_key.first()
    if row is None:
        # The holder failed with a 5xx and freed the key between our insert and this lookup.
        raise _in_progress() from None
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
    if row.created_at >= stale or not same_key.filter(
        pk=row.pk, completed_at__isnull=True, created_at=row.created_at
    ).update(created_at=now):
        raise _in_progress() from None
    return row


class IdempotencyMiddleware:
    """Stores the response of a claimed request (for one marked unrepeatable, a refusal instead);
    frees the claim on a server error."""

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
            kept = _unavailable() if getattr(request, _UNREPEATABLE, False) else response
            IdempotencyKey.objects.filter(pk=row_id).update(
                status_code=kept.status_code,
                response_body=kept.content,
                content_type=kept.get("Content-Type", ""),
                completed_at=timezone.now(),
            )
        return response


def _unavailable() -> HttpResponse:
    return JsonResponse(
        {
            "code": "idempotent_replay_unavailable",
            "message": "这个结果只显示一次，无法重放；请用新的 Idempotency-Key 重新请求",
            "field": HEADER,
        },
        status=409,
    )
