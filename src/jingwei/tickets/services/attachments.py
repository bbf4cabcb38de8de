"""Uploaded files: photos, signatures and documents that form answers and tickets refer to by
key. Stored through Django's default storage: the local disk by default, an S3-compatible bucket
when STORAGE_S3_BUCKET is set (django-storages)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from jingwei.core.errors import Invalid, NotFound
from jingwei.org.scope import Actor

from ..models import Attachment
from .common import CREATE, HANDLE, VIEW, ticket_get

ALLOWED_TYPES = (
    "image/",
    "application/pdf",
    "text/plain",
    "application/zip",
    "application/vnd.openxmlformats-officedocument.",
    "application/msword",
    "application/vnd.ms-excel",
    "audio/",
    "video/",
)


def new_key() -> str:
    return f"f_{secrets.token_hex(12)}"


def _size_text(size: int) -> str:
    # A limit below 1 MB (or not a whole number of MB) would read "最大 0 MB" in megabytes.
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size >= 1024:
        return f"{size // 1024} KB"
    return f"{size} 字节"


def attachment_upload(
    *, actor: Actor, upload: UploadedFile, ticket_id: int | None = None
) -> Attachment:
    """Keep a file for a form answer (not yet on a ticket: the ticket claims it when made) or
    for an existing ticket."""
    if not (actor.has_perm(CREATE) or actor.has_perm(HANDLE)):
        actor.require(CREATE)
    size = upload.size or 0
    if size <= 0:
        raise Invalid("文件为空", code="empty_file", field="file")
    if size > settings.TICKET_ATTACHMENT_MAX_BYTES:
        raise Invalid(
            f"文件过大：最大 {_size_text(settings.TICKET_ATTACHMENT_MAX_BYTES)}",
            code="too_large",
            field="file",
        )
    content_type = (upload.content_type or "application/octet-stream").lower()
    if not content_type.startswith(ALLOWED_TYPES):
        raise Invalid(f"不支持的文件类型：{content_type}", code="file_type", field="file")
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    with transaction.atomic(durable=True):
        ticket = ticket_get(actor, ticket_id, perm=HANDLE, lock=True) if ticket_id else None
        row = Attachment(
            tenant_id=actor.tenant_id,
            key=new_key(),
            ticket=ticket,
            name=(upload.name or "file")[:200],
            content_type=content_type[:100],
            size=size,
            sha256=digest.hexdigest(),
            uploaded_by_id=actor.employee_id,
            created_at=timezone.now(),
        )
        row.file.save(row.name, upload, save=False)
        row.save()
        return row


def attachment_get(*, actor: Actor, key: str) -> Attachment:
    """A file the actor may read: on a ticket they can see, or one they uploaded themselves."""
    actor.require(VIEW)
    row = Attachment.objects.filter(tenant_id=actor.tenant_id, key=key).first()
    if row is None:
        raise NotFound("文件不存在", field="key")
    if row.ticket_id is None:
        if row.uploaded_by_id != actor.employee_id:
            raise NotFound("文件不存在", field="key")
        return row
    ticket_get(actor, row.ticket_id)
    return row
