"""Notifications: the inbox (every user), and the rules engine's set-up and delivery log
(notify.manage): templates, rules, channels, quiet hours, preferences, duty rosters, events."""

from datetime import datetime, time
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from django.utils.timezone import now as timezone_now
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import StrictBool, field_validator

from jingwei.core.api import (
    DB_INT_MAX,
    AuthedRequest,
    Filters,
    In,
    Moment,
    Page,
    refuse_nul_anywhere,
)
from jingwei.core.pii import MaskedContact, MaskedSnapshot

from . import services
from .channels import CHANNELS
from .models import (
    ChannelConfig,
    Delivery,
    MessageTemplate,
    Notification,
    Preference,
    Roster,
    Rule,
    Shift,
)
from .services import config, log, rules
from .services.events import event_record

router = Router(tags=["站内通知"])
Id = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
OptionalId = Field(None, ge=1, le=DB_INT_MAX)
SeverityName = Literal["info", "warning", "urgent"]
# A clock time as people write it ("22:00"); not a number of seconds.
ClockTime = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM，租户所在时区")
]


def _clock(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


class NotificationOut(Schema):
    id: int
    kind: str
    severity: str
    title: str
    body: str
    data: MaskedSnapshot
    created_at: datetime
    read_at: datetime | None


class UnreadOut(Schema):
    unread: int


class MarkedOut(Schema):
    marked: int


def _inbox(request: AuthedRequest) -> QuerySet[Notification]:
    return services.inbox(tenant_id=request.actor.tenant_id, employee_id=request.actor.employee_id)


@router.get("/inbox", response=list[NotificationOut], summary="我的通知")
@paginate(Page)
def list_inbox(request: AuthedRequest, unread: bool = False) -> QuerySet[Notification]:
    qs = _inbox(request)
    return qs.filter(read_at__isnull=True) if unread else qs


@router.get("/inbox/unread", response=UnreadOut, summary="未读数")
def unread_count(request: AuthedRequest) -> UnreadOut:
    return UnreadOut(unread=_inbox(request).filter(read_at__isnull=True).count())


@router.post("/inbox/{notification_id}/read", response=NotificationOut, summary="标为已读")
def mark_read(request: AuthedRequest, notification_id: int) -> Notification:
    return services.notification_mark_read(
        tenant_id=request.actor.tenant_id,
        employee_id=request.actor.employee_id,
        notification_id=notification_id,
    )


@router.post("/inbox/read-all", response=MarkedOut, summary="全部标为已读")
def mark_all_read(request: AuthedRequest) -> MarkedOut:
    return MarkedOut(
        marked=services.inbox_mark_all_read(
            tenant_id=request.actor.tenant_id, employee_id=request.actor.employee_id
        )
    )


class InboxFeedFilters(Filters):
    after_id: int = Field(0, ge=0, le=DB_INT_MAX, description="上次拿到的最大通知编号")


class InboxFeedOut(Schema):
    unread: int
    items: list[NotificationOut]


@router.get(
    "/inbox/feed", response=InboxFeedOut, summary="实时消息（轮询：after_id 之后的新通知与未读数）"
)
def inbox_feed(request: AuthedRequest, filters: Query[InboxFeedFilters]) -> InboxFeedOut:
    qs = _inbox(request)
    items = list(qs.filter(pk__gt=filters.after_id).order_by("id")[:100])
    return InboxFeedOut(unread=qs.filter(read_at__isnull=True).count(), items=items)  # type: ignore[arg-type]


# --- templates and rules ---------------------------------------------------------------------

manage = Router(tags=["通知规则"])


class MessageTemplateIn(In):
    key: str = Field(..., min_length=1, max_length=100, pattern=r"^[-a-zA-Z0-9_]+$")
    name: str = Field(..., min_length=1, max_length=100)
    title: str = Field(
        ..., min_length=1, max_length=200, description="可用 {{ 变量 }}，取自事件内容"
    )
    text: str = Field("", max_length=20000)
    html: str = Field("", max_length=50000)
    sms_template_code: str = Field("", max_length=50)
    sms_params: dict[str, Annotated[str, Field(max_length=500)]] = Field(default_factory=dict)


class MessageTemplateOut(Schema):
    id: int
    key: str
    name: str
    title: str
    text: str
    html: str
    sms_template_code: str
    sms_params: dict[str, str]


RECIPIENTS_HELP = (
    '[{"kind": "employee", "employee_id": 1} | {"kind": "role", "role": "客诉主管", '
    '"scope": "region|department|tenant"} | {"kind": "duty", "roster_id": 1} | '
    '{"kind": "field", "field": "ticket.owner_id"} | {"kind": "manager_of", "field": "..."} | '
    '{"kind": "customer"}]'
)


class NotifyRuleIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    event: str = Field(..., min_length=1, max_length=100, description="事件名；以 * 结尾匹配前缀")
    condition: str = Field("", max_length=2000, description="CEL 条件，取事件内容；空 = 总是")
    recipients: list[dict[str, Any]] = Field(..., max_length=50, description=RECIPIENTS_HELP)
    severity: Literal["", "info", "warning", "urgent"] = Field("", description="空 = 用事件的级别")
    channels: dict[str, list[str]] = Field(
        ..., description='按级别选渠道，如 {"info": ["inapp"], "urgent": ["inapp", "sms"]}'
    )
    template_id: Id
    delay_minutes: int = Field(0, ge=0, le=60 * 24 * 30)
    position: int = Field(0, ge=0, le=1_000_000)
    enabled: StrictBool = True


class NotifyRuleOut(Schema):
    id: int
    name: str
    event: str
    condition: str
    recipients: list[dict[str, Any]]
    severity: str
    channels: dict[str, list[str]]
    template_id: int
    delay_minutes: int
    position: int
    enabled: bool


@manage.get("/templates", response=list[MessageTemplateOut], summary="消息模板")
def list_templates(request: AuthedRequest) -> QuerySet[MessageTemplate]:
    request.actor.require(rules.MANAGE)
    return MessageTemplate.objects.filter(tenant_id=request.actor.tenant_id).order_by("key")


@manage.post("/templates", response={201: MessageTemplateOut}, summary="新建消息模板")
def create_template(request: AuthedRequest, payload: MessageTemplateIn) -> Status[MessageTemplate]:
    return Status(201, rules.template_save(actor=request.actor, data=payload.model_dump()))


@manage.put("/templates/{template_id}", response=MessageTemplateOut, summary="修改消息模板")
def update_template(
    request: AuthedRequest, template_id: int, payload: MessageTemplateIn
) -> MessageTemplate:
    return rules.template_save(
        actor=request.actor, data=payload.model_dump(), template_id=template_id
    )


@manage.delete("/templates/{template_id}", response={204: None}, summary="删除消息模板")
def delete_template(request: AuthedRequest, template_id: int) -> Status[None]:
    rules.template_delete(actor=request.actor, template_id=template_id)
    return Status(204, None)


@manage.get("/rules", response=list[NotifyRuleOut], summary="通知规则")
def list_rules(request: AuthedRequest) -> QuerySet[Rule]:
    request.actor.require(rules.MANAGE)
    return Rule.objects.filter(tenant_id=request.actor.tenant_id)


@manage.post("/rules", response={201: NotifyRuleOut}, summary="新建通知规则")
def create_rule(request: AuthedRequest, payload: NotifyRuleIn) -> Status[Rule]:
    return Status(201, rules.rule_save(actor=request.actor, data=payload.model_dump()))


@manage.put("/rules/{rule_id}", response=NotifyRuleOut, summary="修改通知规则")
def update_rule(request: AuthedRequest, rule_id: int, payload: NotifyRuleIn) -> Rule:
    return rules.rule_save(actor=request.actor, data=payload.model_dump(), rule_id=rule_id)


@manage.delete("/rules/{rule_id}", response={204: None}, summary="删除通知规则")
def delete_rule(request: AuthedRequest, rule_id: int) -> Status[None]:
    rules.rule_delete(actor=request.actor, rule_id=rule_id)
    return Status(204, None)


# --- channels, quiet hours, preferences ------------------------------------------------------


class NotifyChannelOut(Schema):
    channel: str
    label: str
    configured: bool
    enabled: bool
    settings: dict[str, Any]
    secret_fields: list[str]


class NotifyChannelIn(In):
    channel: Literal["email", "sms", "wecom", "dingtalk", "webhook"]
    enabled: StrictBool = True
    settings: dict[str, Any] = Field(
        default_factory=dict, description="渠道参数；密钥回传 ****** 表示不变"
    )


@manage.get("/channels", response=list[NotifyChannelOut], summary="通知渠道及参数（密钥不回显）")
def list_channels(request: AuthedRequest) -> list[NotifyChannelOut]:
    request.actor.require_tenant_wide(rules.MANAGE)
    rows = {c.channel: c for c in ChannelConfig.objects.filter(tenant_id=request.actor.tenant_id)}
    out = []
    for name, adapter in sorted(CHANNELS.items()):
        row = rows.get(name)
        out.append(
            NotifyChannelOut(
                channel=name,
                label=adapter.label,
                configured=name == "inapp" or row is not None,
                enabled=name == "inapp" or bool(row and row.enabled),
                settings=config.masked_settings(row) if row else {},
                secret_fields=list(adapter.secret_fields),
            )
        )
    return out


@manage.put("/channels", response=NotifyChannelOut, summary="配置一个通知渠道")
def save_channel(request: AuthedRequest, payload: NotifyChannelIn) -> NotifyChannelOut:
    row = config.channel_config_save(
        actor=request.actor,
        channel=payload.channel,
        settings=payload.settings,
        enabled=payload.enabled,
    )
    adapter = CHANNELS[payload.channel]
    return NotifyChannelOut(
        channel=payload.channel,
        label=adapter.label,
        configured=True,
        enabled=row.enabled,
        settings=config.masked_settings(row),
        secret_fields=list(adapter.secret_fields),
    )


class QuietHoursIn(In):
    quiet_start: ClockTime
    quiet_end: ClockTime
    quiet_enabled: StrictBool = True


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


class QuietHoursOut(Schema):
    quiet_start: str
    quiet_end: str
    quiet_enabled: bool

    @staticmethod
    def resolve_quiet_start(obj: Any) -> str | None:
        return _hhmm(obj.quiet_start)

    @staticmethod
    def resolve_quiet_end(obj: Any) -> str | None:
        return _hhmm(obj.quiet_end)


@manage.get("/settings", response=QuietHoursOut, summary="免打扰时段（租户）")
def get_settings(request: AuthedRequest) -> Any:
    request.actor.require(rules.MANAGE)
    return config.tenant_settings(request.actor.tenant_id)


@manage.put("/settings", response=QuietHoursOut, summary="设置免打扰时段：非紧急消息等到结束再发")
def save_settings(request: AuthedRequest, payload: QuietHoursIn) -> Any:
    return config.settings_save(
        actor=request.actor,
        quiet_start=time.fromisoformat(payload.quiet_start),
        quiet_end=time.fromisoformat(payload.quiet_end),
        quiet_enabled=payload.quiet_enabled,
    )


class NotifyPreferenceIn(In):
    muted_channels: list[str] = Field(default_factory=list, max_length=10)
    quiet_start: ClockTime | None = None
    quiet_end: ClockTime | None = None
    addresses: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, description="email / phone / wecom_userid，覆盖员工档案"
    )


def _preference(payload: NotifyPreferenceIn) -> dict[str, Any]:
    return {
        **payload.model_dump(),
        "quiet_start": _clock(payload.quiet_start),
        "quiet_end": _clock(payload.quiet_end),
    }


class NotifyPreferenceOut(Schema):
    employee_id: int
    muted_channels: list[str]
    quiet_start: str | None
    quiet_end: str | None
    addresses: dict[str, str]

    @staticmethod
    def resolve_quiet_start(obj: Any) -> str | None:
        return _hhmm(obj.quiet_start)

    @staticmethod
    def resolve_quiet_end(obj: Any) -> str | None:
        return _hhmm(obj.quiet_end)


@router.get("/preferences/me", response=NotifyPreferenceOut, summary="我的通知偏好")
def my_preference(request: AuthedRequest) -> Preference:
    return config.preference_get(request.actor.tenant_id, request.actor.employee_id)


@router.put("/preferences/me", response=NotifyPreferenceOut, summary="设置我的通知偏好")
def save_my_preference(request: AuthedRequest, payload: NotifyPreferenceIn) -> Preference:
    return config.preference_save(actor=request.actor, **_preference(payload))


@manage.put(
    "/preferences/{employee_id}", response=NotifyPreferenceOut, summary="设置某员工的通知偏好"
)
def save_preference(
    request: AuthedRequest, employee_id: int, payload: NotifyPreferenceIn
) -> Preference:
    return config.preference_save(
        actor=request.actor, employee_id=employee_id, **_preference(payload)
    )


# --- duty rosters ----------------------------------------------------------------------------


class DutyRosterIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    region_id: int | None = OptionalId
    fallback_id: int | None = OptionalId


class DutyRosterOut(Schema):
    id: int
    name: str
    region_id: int | None
    fallback_id: int | None


class DutyShiftIn(In):
    employee_id: Id
    starts_at: Moment
    ends_at: Moment


class DutyShiftsIn(In):
    shifts: list[DutyShiftIn] = Field(..., min_length=1, max_length=500)


class DutyShiftOut(Schema):
    id: int
    employee_id: int
    starts_at: datetime
    ends_at: datetime


class OnDutyOut(Schema):
    at: datetime
    employee_ids: list[int]


@manage.get("/rosters", response=list[DutyRosterOut], summary="值班表")
def list_rosters(request: AuthedRequest) -> QuerySet[Roster]:
    request.actor.require(rules.MANAGE)
    return Roster.objects.filter(tenant_id=request.actor.tenant_id).order_by("id")


@manage.post("/rosters", response={201: DutyRosterOut}, summary="新建值班表")
def create_roster(request: AuthedRequest, payload: DutyRosterIn) -> Status[Roster]:
    return Status(201, config.roster_save(actor=request.actor, **payload.model_dump()))


@manage.put("/rosters/{roster_id}", response=DutyRosterOut, summary="修改值班表")
def update_roster(request: AuthedRequest, roster_id: int, payload: DutyRosterIn) -> Roster:
    return config.roster_save(actor=request.actor, roster_id=roster_id, **payload.model_dump())


@manage.get("/rosters/{roster_id}/shifts", response=list[DutyShiftOut], summary="班次")
def list_shifts(
    request: AuthedRequest, roster_id: int, since: Moment | None = None
) -> QuerySet[Shift]:
    request.actor.require(rules.MANAGE)
    roster = config.roster_get(request.actor.tenant_id, roster_id)
    rows = roster.shifts.all()
    return rows.filter(ends_at__gt=since) if since else rows


@manage.post("/rosters/{roster_id}/shifts", response={201: list[DutyShiftOut]}, summary="排班")
def add_shifts(
    request: AuthedRequest, roster_id: int, payload: DutyShiftsIn
) -> Status[list[Shift]]:
    shifts = [(s.employee_id, s.starts_at, s.ends_at) for s in payload.shifts]
    return Status(201, config.shifts_add(actor=request.actor, roster_id=roster_id, shifts=shifts))


@manage.delete("/rosters/{roster_id}/shifts/{shift_id}", response={204: None}, summary="删除班次")
def delete_shift(request: AuthedRequest, roster_id: int, shift_id: int) -> Status[None]:
    config.shift_delete(actor=request.actor, roster_id=roster_id, shift_id=shift_id)
    return Status(204, None)


@manage.get("/rosters/{roster_id}/on-duty", response=OnDutyOut, summary="当前值班人")
def who_is_on_duty(request: AuthedRequest, roster_id: int, at: Moment | None = None) -> OnDutyOut:
    request.actor.require(rules.MANAGE)
    roster = config.roster_get(request.actor.tenant_id, roster_id)
    moment = at or timezone_now()
    return OnDutyOut(at=moment, employee_ids=config.on_duty(roster, moment))


# --- events and the delivery log -------------------------------------------------------------


class NotifyEventIn(In):
    name: str = Field(..., min_length=1, max_length=100)
    key: str = Field(..., min_length=1, max_length=200, description="幂等键：同一键只通知一次")
    severity: SeverityName = "info"
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def refuse_nul_in_payload(cls, value: Any) -> Any:
        return refuse_nul_anywhere(value)


class NotifyEventOut(Schema):
    id: int
    name: str
    key: str
    severity: str
    status: str
    created_at: datetime


class DeliveryOut(Schema):
    id: int
    uid: str
    event_id: int
    event: str
    rule_id: int | None
    recipient: str
    recipient_name: str
    channel: str
    address: MaskedContact
    severity: str
    title: str
    status: str
    held_for_quiet: bool
    not_before: datetime
    attempts: int
    last_error: str
    provider_id: str
    created_at: datetime
    sent_at: datetime | None

    @staticmethod
    def resolve_uid(obj: Delivery) -> str:
        return str(obj.uid)

    @staticmethod
    def resolve_event(obj: Delivery) -> str:
        return obj.event.name


class DeliveryFilters(Filters):
    channel: str = Field("", max_length=20)
    status: Literal["", "pending", "sending", "sent", "dead", "skipped"] = ""
    event: str = Field("", max_length=100)
    q: str = Field("", max_length=100, description="接收人、地址、标题或错误包含")
    since: Moment | None = None
    until: Moment | None = None


class DeliveryCountOut(Schema):
    channel: str
    status: str
    count: int


@manage.post(
    "/events", response={201: NotifyEventOut, 200: NotifyEventOut}, summary="发布事件（按键幂等）"
)
def publish_event(request: AuthedRequest, payload: NotifyEventIn) -> Status[Any]:
    request.actor.require_tenant_wide(rules.MANAGE)
    event, created = event_record(tenant_id=request.actor.tenant_id, **payload.model_dump())
    return Status(201 if created else 200, event)


@manage.get(
    "/deliveries", response=list[DeliveryOut], summary="投递记录（可按渠道、状态、事件、关键字查）"
)
@paginate(Page)
def list_deliveries(request: AuthedRequest, filters: Query[DeliveryFilters]) -> QuerySet[Delivery]:
    return log.deliveries_search(request.actor, **filters.model_dump())


@manage.get("/deliveries/stats", response=list[DeliveryCountOut], summary="按渠道与状态计数")
def delivery_stats(
    request: AuthedRequest, since: Moment | None = None, until: Moment | None = None
) -> list[dict[str, Any]]:
    return log.deliveries_stats(request.actor, since=since, until=until)


@manage.post("/deliveries/{delivery_id}/retry", response=DeliveryOut, summary="重发失败的消息")
def retry_delivery(request: AuthedRequest, delivery_id: int) -> Delivery:
    return log.delivery_retry(actor=request.actor, delivery_id=delivery_id)


router.add_router("", manage)
