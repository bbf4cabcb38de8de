"""Notifications: the in-app inbox row a person sees, and the rules engine around it — events,
rules with templates, channel settings, preferences, quiet hours, duty rosters and the delivery
log (one row per event, rule, recipient and channel)."""

from __future__ import annotations

import uuid
from datetime import time

from django.db import models
from django.utils import timezone

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


# --- the rules engine -------------------------------------------------------------------------


class NotifySettings(TenantModel):
    """A tenant's quiet hours: non-urgent messages created inside them wait until they end."""

    quiet_start = models.TimeField("免打扰开始", default=time(22, 0))
    quiet_end = models.TimeField("免打扰结束", default=time(8, 0))
    quiet_enabled = models.BooleanField("启用免打扰", default=True)

    class Meta:
        verbose_name = "通知设置"
        verbose_name_plural = "通知设置"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="notify_settings_one")]


class ChannelConfig(TenantModel):
    """How a tenant reaches one channel (SMTP server, SMS keys, WeCom app, robot, webhook)."""

    channel = models.CharField("渠道", max_length=20)
    enabled = models.BooleanField("启用", default=True)
    settings = models.JSONField("参数", default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "通知渠道"
        verbose_name_plural = "通知渠道"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "channel"], name="notify_channel_once")
        ]


class Preference(TenantModel):
    """One person's choices: channels they mute (urgent messages still come), their own quiet
    hours, and addresses that differ from their employee record (a WeCom userid)."""

    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    muted_channels = models.JSONField("屏蔽渠道", default=list, blank=True)
    quiet_start = models.TimeField("免打扰开始", null=True, blank=True)
    quiet_end = models.TimeField("免打扰结束", null=True, blank=True)
    addresses = models.JSONField("接收地址", default=dict, blank=True)

    scope_fields = ScopeFields(owner="employee")

    class Meta:
        verbose_name = "个人通知偏好"
        verbose_name_plural = "个人通知偏好"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "employee"], name="notify_preference_once")
        ]


class MessageTemplate(TenantModel):
    """Title, text and HTML with {{ variables }} from the event's payload; SMS sends a
    provider-approved template code with named parameters instead."""

    key = models.SlugField("标识", max_length=100)
    name = models.CharField("名称", max_length=100)
    title = models.CharField("标题", max_length=200)
    text = models.TextField("正文", blank=True, default="")
    html = models.TextField("HTML 正文", blank=True, default="")
    sms_template_code = models.CharField("短信模板号", max_length=50, blank=True, default="")
    sms_params = models.JSONField("短信参数", default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "消息模板"
        verbose_name_plural = "消息模板"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="notify_template_key_once")
        ]

    def __str__(self) -> str:
        return self.name


class Rule(TenantModel):
    """Event + condition → recipients → channels by severity, rendered with a template."""

    name = models.CharField("名称", max_length=100)
    event = models.CharField("事件", max_length=100, db_index=True)
    condition = models.TextField("条件", blank=True, default="")
    recipients = models.JSONField("接收人", default=list)
    severity = models.CharField("级别", max_length=10, default="")  # "" = the event's own
    channels = models.JSONField("按级别的渠道", default=dict)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="+")
    delay_minutes = models.PositiveIntegerField("延迟分钟", default=0)
    position = models.PositiveIntegerField("顺序", default=0)
    enabled = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "通知规则"
        verbose_name_plural = "通知规则"
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class Roster(TenantModel):
    """A team's duty roster: who is on duty now is whoever holds the current shift."""

    name = models.CharField("名称", max_length=100)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Nobody on shift (a gap in the roster): this person is reached instead of no one.
    fallback = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    scope_fields = ScopeFields(region="region")

    class Meta:
        verbose_name = "值班表"
        verbose_name_plural = "值班表"

    def __str__(self) -> str:
        return self.name


class Shift(TenantModel):
    roster = models.ForeignKey(Roster, on_delete=models.CASCADE, related_name="shifts")
    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    starts_at = models.DateTimeField("开始")
    ends_at = models.DateTimeField("结束")

    class Meta:
        verbose_name = "班次"
        verbose_name_plural = "班次"
        ordering = ["starts_at", "id"]
        indexes = [models.Index(fields=["roster", "starts_at", "ends_at"])]


class EventStatus(models.TextChoices):
    NEW = "new", "待分发"
    DONE = "done", "已分发"


class Event(TenantModel):
    """Something happened that people may need to hear of. `key` makes publishing idempotent."""

    name = models.CharField(max_length=100)
    key = models.CharField(max_length=200)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=EventStatus.choices, default=EventStatus.NEW)
    created_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "通知事件"
        verbose_name_plural = "通知事件"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="notify_event_key_once")
        ]
        indexes = [models.Index(fields=["status", "created_at"])]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "待发送"
    SENDING = "sending", "发送中"
    SENT = "sent", "已发送"
    DEAD = "dead", "失败"
    SKIPPED = "skipped", "未发送"


class Delivery(TenantModel):
    """One message to one recipient on one channel, for one event and rule — at most one row.

    The send is recorded before (status sending, a lease) and after (sent, or back to pending with
    a backoff, or dead). A worker that dies in between leaves the lease to expire and the next one
    sends again with the same `uid`, which is the receiver's dedupe key."""

    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(Rule, null=True, on_delete=models.SET_NULL, related_name="+")
    recipient = models.CharField(max_length=120)  # "employee:12", "customer", "group"
    recipient_name = models.CharField(max_length=100, blank=True, default="")
    employee = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    channel = models.CharField(max_length=20)
    address = models.CharField(max_length=200, blank=True, default="")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    title = models.CharField(max_length=200)
    text = models.TextField(blank=True, default="")
    html = models.TextField(blank=True, default="")
    extra = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    held_for_quiet = models.BooleanField(default=False)
    not_before = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    provider_id = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "投递记录"
        verbose_name_plural = "投递记录"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "event", "rule", "recipient", "channel"],
                name="notify_delivery_once",
            )
        ]
        indexes = [
            models.Index(fields=["status", "not_before"]),
            models.Index(fields=["tenant", "channel", "status"]),
        ]
