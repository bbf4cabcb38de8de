"""Ticket templates and their versions, tickets with their numbers, comments, watchers,
attachments and timeline, routing rules and queues, mailboxes, and opportunities (商机).

A template is global (HQ, `region` empty) or a region's override of a global one (same `key`,
`region` set): the override adds its own fields to the global form, and a ticket made in a region
uses the nearest override up the region tree. Every change of a template makes a new immutable
version; a ticket keeps the version it was made with.

A ticket's work runs as a flow instance (flows app); the ticket keeps a copy of where the flow
stands (`stage`, `status`) so lists filter on indexed columns.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from jingwei.core.models import TenantModel
from jingwei.org.scope import ScopeFields


class TicketTemplate(TenantModel):
    key = models.SlugField("模板标识", max_length=60)
    name = models.CharField("名称", max_length=100)
    category = models.CharField("工单类型", max_length=30, blank=True, default="")
    description = models.CharField("说明", max_length=500, blank=True, default="")
    # Empty: the global (HQ) template; set: that region's override of the global one.
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    base = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="overrides"
    )
    current_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_active = models.BooleanField("启用", default=True)
    # The public form (no login) is reached through this token; empty: no public form.
    public_token = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Region-scoped writes: a regional manager edits the overrides of their region.
    scope_fields = ScopeFields(region="region")

    class Meta:
        verbose_name = "工单模板"
        verbose_name_plural = "工单模板"
        ordering = ["key", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "key", "region"], name="ticket_template_key_per_region"
            ),
            models.UniqueConstraint(
                fields=["tenant", "key"],
                condition=Q(region__isnull=True),
                name="ticket_template_key_global",
            ),
            models.UniqueConstraint(
                fields=["tenant", "public_token"],
                condition=~Q(public_token=""),
                name="ticket_template_public_token",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_override(self) -> bool:
        return self.region_id is not None


class TemplateVersion(TenantModel):
    """One immutable state of a template: its effective form (for an override, the global form
    with the region's fields added), the region's own additions, and the flow it runs."""

    template = models.ForeignKey(TicketTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField("版本号")
    form = models.JSONField("表单")
    own_fields = models.JSONField("本区域增加的字段", default=dict, blank=True)
    flow_key = models.SlugField("流程", max_length=100)
    default_priority = models.CharField(max_length=1, default="B")
    # The global version an override's version was built on (null for global versions).
    base_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField("说明", max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "模板版本"
        verbose_name_plural = "模板版本"
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "template", "number"], name="template_version_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template_id} v{self.number}"


class Priority(models.TextChoices):
    S = "S", "S 紧急"
    A = "A", "A 高"
    B = "B", "B 中"
    C = "C", "C 低"


class Source(models.TextChoices):
    CONSOLE = "console", "控制台"
    API = "api", "API"
    PUBLIC_FORM = "public_form", "公开表单"
    EMAIL = "email", "邮件"
    WECOM = "wecom", "企业微信"
    SHOP = "shop", "商城订单"
    PHONE = "phone", "电话"


class TicketStatus(models.TextChoices):
    OPEN = "open", "处理中"
    RESOLVED = "resolved", "已完成"
    CLOSED = "closed", "已关闭"


class Queue(TenantModel):
    """A team that takes tickets (华东售后): routing rules send tickets here."""

    name = models.CharField("名称", max_length=100)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    members = models.ManyToManyField(
        "org.Employee", through="QueueMember", related_name="+", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "工单队列"
        verbose_name_plural = "工单队列"
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="queue_name")]

    def __str__(self) -> str:
        return self.name


class QueueMember(TenantModel):
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="memberships")
    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "queue", "employee"], name="queue_member")
        ]


class RoutingRule(TenantModel):
    """When `conditions` hold for a new ticket, it goes to `queue` and `assignment` picks who
    owns it. Rules are tried in `position` order; the first that matches decides."""

    name = models.CharField("名称", max_length=100)
    position = models.PositiveIntegerField("顺序")
    conditions = models.JSONField("条件", default=dict, blank=True)
    queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # {"rule": "none" | "user" | "least_loaded" | "round_robin" | "customer_owner", ...}
    assignment = models.JSONField("分配", default=dict, blank=True)
    priority = models.CharField("设定优先级", max_length=1, blank=True, default="")
    is_active = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "路由规则"
        verbose_name_plural = "路由规则"
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="routing_rule_name")]

    def __str__(self) -> str:
        return self.name


class OpportunityStage(models.TextChoices):
    LEAD = "lead", "线索"
    QUALIFIED = "qualified", "需求确认"
    PROPOSAL = "proposal", "方案报价"
    NEGOTIATION = "negotiation", "商务谈判"
    WON = "won", "赢单"
    LOST = "lost", "输单"


class Opportunity(TenantModel):
    """A sale in the making (商机), often found while serving a ticket."""

    title = models.CharField("名称", max_length=200)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="opportunities"
    )
    stage = models.CharField(
        "阶段", max_length=12, choices=OpportunityStage.choices, default=OpportunityStage.LEAD
    )
    amount = models.DecimalField("金额", max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField("币种", max_length=3, default="CNY")
    source = models.CharField("来源", max_length=50, blank=True, default="")
    owner = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expected_close = models.DateField("预计成交", null=True, blank=True)
    from_ticket = models.ForeignKey(
        "Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    scope_fields = ScopeFields(owner="owner", region="region")

    class Meta:
        verbose_name = "商机"
        verbose_name_plural = "商机"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "customer"], name="opportunity_customer")]

    def __str__(self) -> str:
        return self.title


class TicketCounter(TenantModel):
    """The last number handed out for a prefix and day (GD20261124-0001): one row locked per
    ticket created, so numbers never repeat (a rolled-back number may leave a gap)."""

    prefix = models.CharField(max_length=20)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "prefix"], name="ticket_counter_prefix")
        ]


class Ticket(TenantModel):
    number = models.CharField("工单号", max_length=30)
    title = models.CharField("标题", max_length=200)
    template = models.ForeignKey(TicketTemplate, on_delete=models.PROTECT, related_name="+")
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, related_name="+"
    )
    answers = models.JSONField("表单内容", default=dict, blank=True)
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who reported it, as they gave it (a public form, a mail): kept even when a customer is found.
    contact_name = models.CharField("联系人", max_length=100, blank=True, default="")
    contact_phone = models.CharField("联系电话", max_length=30, blank=True, default="")
    contact_email = models.CharField("联系邮箱", max_length=254, blank=True, default="")
    source = models.CharField("来源", max_length=20, choices=Source.choices)
    # Per source, the outside id that makes a retried entry the same ticket (mail Message-ID,
    # WeCom msgid, a public form's submission id, a shop order's event id).
    source_key = models.CharField(max_length=200, blank=True, default="")
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    department = models.ForeignKey(
        "org.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    priority = models.CharField("优先级", max_length=1, choices=Priority.choices, default="B")
    status = models.CharField(
        "状态", max_length=10, choices=TicketStatus.choices, default=TicketStatus.OPEN
    )
    stage = models.CharField("当前步骤", max_length=200, blank=True, default="")
    queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        "org.Employee",
        verbose_name="负责人",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    routing_rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instance = models.ForeignKey(
        "flows.Instance", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    opportunity = models.ForeignKey(
        Opportunity, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    # The projects library (catalog) and the shop integration come later; until then the ids.
    project_ref = models.CharField("项目", max_length=60, blank=True, default="")
    shop_order_ref = models.CharField("商城订单号", max_length=60, blank=True, default="")
    progress_token = models.CharField(max_length=40)
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    scope_fields = ScopeFields(owner="owner", department="department", region="region")

    class Meta:
        verbose_name = "工单"
        verbose_name_plural = "工单"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="ticket_number"),
            models.UniqueConstraint(fields=["tenant", "progress_token"], name="ticket_progress"),
            models.UniqueConstraint(
                fields=["tenant", "instance"],
                condition=Q(instance__isnull=False),
                name="ticket_instance",
            ),
            models.UniqueConstraint(
                fields=["tenant", "source", "source_key"],
                condition=~Q(source_key=""),
                name="ticket_source_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "created_at"], name="ticket_status"),
            models.Index(fields=["tenant", "owner", "status"], name="ticket_owner"),
            models.Index(fields=["tenant", "customer"], name="ticket_customer"),
            models.Index(fields=["progress_token"], name="ticket_progress_token"),
        ]

    def __str__(self) -> str:
        return self.number


class TicketWatcher(TenantModel):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="watchers")
    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "ticket", "employee"], name="ticket_watcher")
        ]


class Visibility(models.TextChoices):
    INTERNAL = "internal", "内部"
    PUBLIC = "public", "客户可见"


class TicketComment(TenantModel):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A customer's own words (a mail reply) have no employee: their name as they gave it.
    author_name = models.CharField(max_length=100, blank=True, default="")
    body = models.TextField()
    visibility = models.CharField(max_length=10, choices=Visibility.choices)
    via = models.CharField(max_length=20, choices=Source.choices, default=Source.CONSOLE)
    message_id = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "message_id"],
                condition=~Q(message_id=""),
                name="ticket_comment_message",
            )
        ]


class Attachment(TenantModel):
    """An uploaded file: form answers of type attachment/photo/signature hold `key`s."""

    key = models.CharField(max_length=64)
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to="tickets/%Y/%m/", max_length=300)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100, blank=True, default="")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="attachment_key")]


class TicketEvent(TenantModel):
    """What happened to a ticket outside its flow (created, routed, commented, closed…); the
    timeline shows these beside the flow's own events."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=40)
    actor = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    public = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["ticket", "at"], name="ticket_event_at")]


class Mailbox(TenantModel):
    """A service mailbox (service@…): mail to it opens tickets from `template`."""

    # Unique per tenant as every constraint here; the service also refuses an address another
    # tenant uses, since a mail's recipient must lead to one tenant.
    address = models.EmailField(max_length=254)
    template = models.ForeignKey(TicketTemplate, on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "服务邮箱"
        verbose_name_plural = "服务邮箱"
        constraints = [models.UniqueConstraint(fields=["tenant", "address"], name="mailbox")]
        indexes = [models.Index(fields=["address"], name="mailbox_address")]
