"""A django-tasks job for the worker tests: it leaves a visible mark (an audit event)."""

from __future__ import annotations

from django.utils import timezone
from django_tasks import task

from jingwei.audit.models import AuditEvent

RAN_ACTION = "test.task_ran"


@task()
def leave_mark(tenant_id: int, marker: str) -> str:
    AuditEvent.objects.create(
        tenant_id=tenant_id, at=timezone.now(), action=RAN_ACTION, subject_id=marker
    )
    return marker
