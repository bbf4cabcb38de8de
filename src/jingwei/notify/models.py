"""In-app notifications: the inbox row a person sees. The rules engine and the other channels
(mail, SMS, WeCom, DingTalk, webhook) build on this in the notifications module."""

from __future__ import annotations

from django.db import models

from jingwei.core.models import TenantModel
from jingwei.org.scope import ScopeFields


class Severity(models.TextChoices):
    INFO = "info", "提示"
    WARNING = "warning", "警告"
    URGENT = "urgent", "紧急"


class Notification(TenantModel):
    recipient = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=100)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    # Everybody sees only their own inbox, whatever their scope.
    scope_fields = ScopeFields(owner="recipient")

    class Meta:
        verbose_name = "站内通知"
        verbose_name_plural = "站内通知"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "recipient", "read_at"])]

    def __str__(self) -> str:
        return self.title
