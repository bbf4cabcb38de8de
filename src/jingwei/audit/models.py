"""The audit log: who did what, when, with the row before and after. Append-only."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jingwei.core.models import TenantModel
from jingwei.org.scope import ScopeFields


class AuditEvent(TenantModel):
    at = models.DateTimeField("时间", db_index=True)
    actor = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField("操作人", max_length=100, blank=True, default="")
    # Where the subject lay when it happened (by its scope fields): what scopes a reader's view.
    # A reader below company scope sees events about subjects in their scope, and their own acts.
    department = models.ForeignKey(
        "org.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField("动作", max_length=100, db_index=True)
    subject_type = models.CharField("对象类型", max_length=100, blank=True, default="")
    subject_id = models.CharField("对象编号", max_length=64, blank=True, default="")
    subject_label = models.CharField("对象", max_length=200, blank=True, default="")
    before = models.JSONField("修改前", null=True, blank=True)
    after = models.JSONField("修改后", null=True, blank=True)
    data = models.JSONField("附加信息", default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    scope_fields = ScopeFields(owner="actor", department="department", region="region")

    class Meta:
        verbose_name = "审计事件"
        verbose_name_plural = "审计事件"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant", "subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action}"


class ExportRecord(TenantModel):
    """One export by one user: what the export guard counts."""

    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    at = models.DateTimeField(db_index=True)

    scope_fields = ScopeFields(
        owner="employee", department="employee__department", region="employee__region"
    )

    class Meta:
        verbose_name = "导出记录"
        verbose_name_plural = "导出记录"
        ordering = ["-at"]
