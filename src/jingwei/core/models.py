"""Building blocks every app uses: the tenant-owned base model and the timers table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from jingwei.org.scope import Actor, ScopeFields


class TenantQuerySet(models.QuerySet[Any]):
    def for_tenant(self, tenant_id: int) -> Self:
        return self.filter(tenant_id=tenant_id)

    def visible_to(self, actor: Actor, perm: str) -> Self:
        """The one read gate: the actor's tenant first, then the data scope their roles give for `perm`."""
        from jingwei.org.scope import apply_scope

        return apply_scope(self.filter(tenant_id=actor.tenant_id), actor, perm)


class TenantModel(models.Model):
    """A row owned by one tenant.

    Rules (checked by tests/core/test_tenancy_layout.py): every unique constraint includes
    `tenant`, and foreign keys point at rows of the same tenant or at shared reference tables.
    `scope_fields` names the fields the data scope filters on (see org.scope).
    """

    tenant = models.ForeignKey("org.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()
    scope_fields: ClassVar[ScopeFields | None] = None

    class Meta:
        abstract = True


class TimerStatus(models.TextChoices):
    PENDING = "pending", "待触发"
    FIRED = "fired", "已触发"
    FAILED = "failed", "失败"
    CANCELLED = "cancelled", "已取消"


class Timer(TenantModel):
    """Something to do at `due_at`: an SLA step, a reminder, a grant's expiry.

    The timer loop (core.timers) claims due rows with SELECT … FOR UPDATE SKIP LOCKED and runs the
    handler named by `kind` in the same transaction as marking the row fired.
    """

    kind = models.CharField(max_length=100)
    key = models.CharField(max_length=200, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=TimerStatus.choices, default=TimerStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    fired_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["due_at"], name="timer_due_pending", condition=Q(status="pending")
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "key"],
                condition=~Q(key=""),
                name="timer_unique_key_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}@{self.due_at:%Y-%m-%d %H:%M}"


class IdempotencyKey(TenantModel):
    """A write sent with an `Idempotency-Key` header: claimed before it runs, its response kept so a
    retry gets the same answer instead of a second effect (see core.idempotency)."""

    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # created_at: the sweep of expired keys (any tenant) reads oldest first.
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_at")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "employee", "key"], name="idempotency_key_per_employee"
            )
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
