"""Customers and their identities, merge candidates, and the record of every merge.

One profile per real customer: identities (phone, e-mail, WeCom external_userid, WeChat unionid
and openid, shop buyer ids) point at it, and the deterministic key (kind, namespace, normalised
value) of an active identity is unique per tenant. Merging B into A moves what B owns to A and
writes a MergeRecord listing exactly what moved, so un-merging restores it; B stays as a row
pointing at A (`merged_into`), so its id still leads somewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from django.db import models
from django.db.models import F, Q

from jingwei.core.models import TenantModel, TenantQuerySet
from jingwei.org.scope import ScopeFields, scope_q

from .identities import NAMESPACE_MAX, VALUE_MAX, IdentityKind

if TYPE_CHECKING:
    from jingwei.org.models import Employee
    from jingwei.org.scope import Actor


class CustomerKind(models.TextChoices):
    PERSON = "person", "个人"
    COMPANY = "company", "企业"


class CustomerLevel(models.TextChoices):
    VIP = "vip", "VIP"
    NORMAL = "normal", "普通"
    POTENTIAL = "potential", "潜在"


class CustomerQuerySet(TenantQuerySet):
    def visible_to(self, actor: Actor, perm: str) -> Self:
        """The data scope of `perm`, plus the customers the actor collaborates on (协作人), as long
        as the actor holds `perm` at all."""
        if not actor.has_perm(perm):
            return self.none()
        own_tenant = self.filter(tenant_id=actor.tenant_id)
        scoped = scope_q(self.model, actor, perm)
        if not scoped:  # an empty Q: the whole tenant (and Q() | x would narrow it to x)
            return own_tenant
        shared = CustomerCollaborator.objects.filter(
            tenant_id=actor.tenant_id, employee_id=actor.employee_id
        ).values("customer_id")
        return own_tenant.filter(scoped | Q(pk__in=shared))

    def active(self) -> Self:
        """Customers not merged into another (the ones lists show)."""
        return self.filter(merged_into__isnull=True)


class Customer(TenantModel):
    kind = models.CharField(
        "类型", max_length=10, choices=CustomerKind.choices, default=CustomerKind.PERSON
    )
    name = models.CharField("名称", max_length=100)
    company_name = models.CharField("公司名称", max_length=200, blank=True, default="")
    # company_name (or the name of a company) folded for look-alike matching; see services.
    company_key = models.CharField(max_length=200, blank=True, default="", editable=False)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    department = models.ForeignKey(
        "org.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        "org.Employee",
        verbose_name="负责人",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    collaborators: models.ManyToManyField[Employee, CustomerCollaborator] = models.ManyToManyField(
        "org.Employee", through="CustomerCollaborator", related_name="+", blank=True
    )
    level = models.CharField(
        "等级", max_length=10, choices=CustomerLevel.choices, default=CustomerLevel.NORMAL
    )
    source = models.CharField("来源渠道", max_length=50, blank=True, default="")
    remark = models.CharField("备注", max_length=500, blank=True, default="")
    merged_into = models.ForeignKey(
        "self",
        verbose_name="已合并到",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="merged_customers",
    )
    merged_at = models.DateTimeField(null=True, blank=True)
    # Ownership and follow-up: when the current owner got the customer (claim, assignment,
    # handover), the last recorded follow-up and the next one promised. A customer with a region
    # and no owner is in that region's pool (公海).
    owned_since = models.DateTimeField("领取/分配时间", null=True, blank=True)
    last_followed_at = models.DateTimeField("最近跟进", null=True, blank=True)
    next_follow_up_at = models.DateTimeField("下次跟进", null=True, blank=True)
    # The sum of the tenant's score signals this customer matched when last scored (see scoring).
    score = models.IntegerField("评分", default=0)
    scored_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()  # type: ignore[misc]
    scope_fields = ScopeFields(owner="owner", department="department", region="region")

    class Meta:
        verbose_name = "客户"
        verbose_name_plural = "客户"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "name"], name="customer_name"),
            models.Index(
                fields=["tenant", "company_key"],
                name="customer_company_key",
                condition=~Q(company_key=""),
            ),
            models.Index(fields=["tenant", "owner"], name="customer_owner"),
            models.Index(fields=["tenant", "region", "owner"], name="customer_region_owner"),
            models.Index(fields=["tenant", "score"], name="customer_score"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None


class CustomerCollaborator(TenantModel):
    """An employee who works on a customer besides its owner (协作人); sees it like the owner."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="collaborations")
    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    scope_fields = ScopeFields(
        owner="employee", department="customer__department", region="customer__region"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "employee"], name="customer_collaborator_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.employee_id}"


class IdentityStatus(models.TextChoices):
    ACTIVE = "active", "有效"
    REMOVED = "removed", "已移除"


class Identity(TenantModel):
    """One way of recognising a customer. Removing it keeps the row (status removed) for history
    and frees its key, so the same phone may later belong to someone else."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="identities")
    kind = models.CharField("类型", max_length=20, choices=IdentityKind.choices)
    namespace = models.CharField("命名空间", max_length=NAMESPACE_MAX, blank=True, default="")
    value = models.CharField("值（规范化）", max_length=VALUE_MAX)
    verified = models.BooleanField("已验证", default=False)
    source = models.CharField("来源", max_length=50, blank=True, default="")
    status = models.CharField(
        max_length=10, choices=IdentityStatus.choices, default=IdentityStatus.ACTIVE
    )
    first_seen_at = models.DateTimeField("首次出现")
    last_seen_at = models.DateTimeField("最近出现")
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    scope_fields = ScopeFields(
        owner="customer__owner", department="customer__department", region="customer__region"
    )

    class Meta:
        verbose_name = "客户身份"
        verbose_name_plural = "客户身份"
        ordering = ["customer", "status", "kind", "id"]
        constraints = [
            # The deterministic key: one active owner per (kind, namespace, value) in a tenant.
            models.UniqueConstraint(
                fields=["tenant", "kind", "namespace", "value"],
                condition=Q(status="active"),
                name="identity_key_active_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}:{self.customer_id}"


class CandidateStatus(models.TextChoices):
    PROPOSED = "proposed", "待处理"
    ACCEPTED = "accepted", "已合并"
    REJECTED = "rejected", "不是同一客户"


class CandidateReason(models.TextChoices):
    SHARED_IDENTITY = "shared_identity", "同一次登记的身份分属两位客户"
    SIMILAR_PHONE = "similar_phone", "同名且手机号相近"
    SAME_NAME_COMPANY = "same_name_company", "同名且同公司"
    SAME_COMPANY = "same_company", "企业名称相同"


class MergeCandidate(TenantModel):
    """Two customers that may be one, for a person to decide. One row per pair, stored with the
    older customer (the default survivor) first; a rejected pair is not proposed again."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    other = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField("原因", max_length=20, choices=CandidateReason.choices)
    score = models.PositiveSmallIntegerField("相似度")  # 0–100
    detail = models.JSONField(default=dict, blank=True)  # identity ids, never raw values
    status = models.CharField(
        max_length=10, choices=CandidateStatus.choices, default=CandidateStatus.PROPOSED
    )
    note = models.CharField("处理说明", max_length=200, blank=True, default="")
    decided_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "疑似重复客户"
        verbose_name_plural = "疑似重复客户"
        ordering = ["-score", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "other"], name="merge_candidate_pair"
            ),
            models.CheckConstraint(
                condition=Q(customer__lt=F("other")), name="merge_candidate_ordered"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "status"], name="merge_candidate_status")]

    def __str__(self) -> str:
        return f"{self.customer_id}~{self.other_id} ({self.reason})"


class MergeRecord(TenantModel):
    """Customer `source` merged into `target`: what moved (`moved`: a list of row ids per kind of
    row, e.g. {"customers.identity": [3, 9]}), which blank fields of the target it filled
    (`filled`: field → [value before, value after]), by whom and why. Undoing moves exactly
    those rows back and empties those fields again if nobody changed them since."""

    target = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="merges_in")
    source = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="merges_out")
    candidate = models.ForeignKey(
        MergeCandidate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField("原因", max_length=200, blank=True, default="")
    moved = models.JSONField(default=dict)
    filled = models.JSONField(default=dict, blank=True)
    merged_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    merged_at = models.DateTimeField()
    undone_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)
    undo_reason = models.CharField("拆分原因", max_length=200, blank=True, default="")

    scope_fields = ScopeFields(
        owner="target__owner", department="target__department", region="target__region"
    )

    class Meta:
        verbose_name = "客户合并记录"
        verbose_name_plural = "客户合并记录"
        ordering = ["-merged_at", "-id"]
        constraints = [
            # A customer is merged into at most one other at a time (a second, concurrent merge
            # of the same source fails here even if it slipped past the row locks).
            models.UniqueConstraint(
                fields=["tenant", "source"],
                condition=Q(undone_at__isnull=True),
                name="merge_record_one_active_per_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_id}→{self.target_id}"

    @property
    def is_undone(self) -> bool:
        return self.undone_at is not None


# --- tags ------------------------------------------------------------------------------------


class TagChoice(models.TextChoices):
    SINGLE = "single", "单选"
    MULTI = "multi", "多选"


class TagGroup(TenantModel):
    """A family of tags, e.g. 客户价值 (single: a customer is 高/中/低, never two) or 兴趣 (multi)."""

    name = models.CharField("名称", max_length=50)
    choice = models.CharField(
        "选择方式", max_length=10, choices=TagChoice.choices, default=TagChoice.MULTI
    )
    description = models.CharField("说明", max_length=200, blank=True, default="")
    sort = models.IntegerField("排序", default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "标签组"
        verbose_name_plural = "标签组"
        ordering = ["sort", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="tag_group_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class Tag(TenantModel):
    group = models.ForeignKey(TagGroup, on_delete=models.PROTECT, related_name="tags")
    name = models.CharField("名称", max_length=50)
    color = models.CharField("颜色", max_length=20, blank=True, default="")
    sort = models.IntegerField("排序", default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "标签"
        verbose_name_plural = "标签"
        ordering = ["group", "sort", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "group", "name"], name="tag_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class TagSource(models.TextChoices):
    MANUAL = "manual", "手动"
    RULE = "rule", "规则"
    IMPORT = "import", "导入"
    INTEGRATION = "integration", "集成同步"


class CustomerTag(TenantModel):
    """A tag on a customer: who or which rule set it, and when. Removing a tag deletes the row
    (the audit log and the timeline keep that it was there)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tag_links")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="customer_links")
    source = models.CharField(
        "来源", max_length=12, choices=TagSource.choices, default=TagSource.MANUAL
    )
    rule = models.ForeignKey(
        "TagRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tagged_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tagged_at = models.DateTimeField("打标时间")

    scope_fields = ScopeFields(
        owner="customer__owner", department="customer__department", region="customer__region"
    )

    class Meta:
        verbose_name = "客户标签"
        verbose_name_plural = "客户标签"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "tag"], name="customer_tag_unique"
            )
        ]
        indexes = [models.Index(fields=["tenant", "tag", "customer"], name="customer_tag_by_tag")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.tag_id}"


class TagRule(TenantModel):
    """Auto-tagging as data: customers matching `conditions` (the language of
    customers.conditions, shared with segments and scoring) get `tag`. Re-evaluated for a
    customer when one of its events arrives, and for everyone by the batch job. With
    `remove_unmatched`, a tag this rule set is taken off when the customer no longer matches
    (a tag a person set is never touched by a rule)."""

    name = models.CharField("名称", max_length=100)
    tag = models.ForeignKey(Tag, on_delete=models.PROTECT, related_name="rules")
    conditions = models.JSONField("条件")
    enabled = models.BooleanField("启用", default=True)
    remove_unmatched = models.BooleanField("不再满足时移除", default=True)
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_run_at = models.DateTimeField("最近批量执行", null=True, blank=True)
    last_run_stats = models.JSONField(default=dict, blank=True)  # {"added": n, "removed": n, …}

    class Meta:
        verbose_name = "自动标签规则"
        verbose_name_plural = "自动标签规则"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="tag_rule_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


# --- behaviour events and the timeline -------------------------------------------------------


class EventKind(models.TextChoices):
    PAGE_VIEW = "page_view", "浏览"
    CHAT = "chat", "会话"
    FORM = "form", "表单"
    ORDER = "order", "订单"
    TICKET = "ticket", "工单"
    CAMPAIGN = "campaign", "营销活动"
    CALL = "call", "通话"
    MAIL = "mail", "邮件"
    SURVEY = "survey", "回访调查"
    FOLLOW_UP = "follow_up", "跟进"
    SYSTEM = "system", "系统"


class CustomerEvent(TenantModel):
    """One touch between the business and a customer, newest first on the timeline. Outside
    events arrive through the ingest API with the sender's `event_id` (a retry with the same id
    is the same event); inside ones (tickets, follow-ups, ownership) are written by services.
    `channel` says where (mini-program, taobao, wecom, …); `data` carries the details."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField("类型", max_length=12, choices=EventKind.choices)
    channel = models.CharField("渠道", max_length=50, blank=True, default="")
    event_id = models.CharField("事件ID", max_length=100)
    title = models.CharField("摘要", max_length=200, blank=True, default="")
    amount = models.DecimalField("金额", max_digits=14, decimal_places=2, null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField("发生时间")
    received_at = models.DateTimeField("接收时间", auto_now_add=True)

    scope_fields = ScopeFields(
        owner="customer__owner", department="customer__department", region="customer__region"
    )

    class Meta:
        verbose_name = "客户行为事件"
        verbose_name_plural = "客户行为事件"
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id"], name="customer_event_id_unique")
        ]
        indexes = [
            models.Index(
                fields=["tenant", "customer", "kind", "occurred_at"], name="customer_event_kind"
            ),
            models.Index(fields=["tenant", "customer", "occurred_at"], name="customer_timeline"),
            # Segments and rules count one kind of event in a window over all customers.
            models.Index(
                fields=["tenant", "kind", "occurred_at", "customer"], name="customer_event_window"
            ),
            models.Index(fields=["tenant", "occurred_at"], name="customer_event_age"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.event_id}"


# --- per-tenant settings, pools, follow-ups, handovers ----------------------------------------


class CustomerSettings(TenantModel):
    """A tenant's customer settings (one row; defaults when absent)."""

    # Behaviour events older than this are deleted by the retention job (0 = keep for ever).
    event_retention_days = models.PositiveIntegerField("行为事件保留天数", default=730)

    class Meta:
        verbose_name = "客户设置"
        verbose_name_plural = "客户设置"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="customer_settings_one_per_tenant")
        ]


class CustomerPool(TenantModel):
    """A region's pool (公海) rules. Customers of the region (or of a sub-region without its own
    pool) that have no owner are in it. `claim_limit`: how many customers of this pool one
    employee may own at once by claiming; `return_after_days`: an owned customer with no
    follow-up for that long goes back to the pool (0 = never)."""

    region = models.ForeignKey("org.Region", on_delete=models.CASCADE, related_name="+")
    name = models.CharField("名称", max_length=50)
    claim_limit = models.PositiveIntegerField("领取上限", default=50)
    daily_claim_limit = models.PositiveIntegerField("每日领取上限", default=20)
    return_after_days = models.PositiveIntegerField("未跟进自动退回天数", default=30)
    enabled = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    scope_fields = ScopeFields(region="region")

    class Meta:
        verbose_name = "公海"
        verbose_name_plural = "公海"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "region"], name="customer_pool_region")
        ]

    def __str__(self) -> str:
        return self.name


class FollowUpKind(models.TextChoices):
    CALL = "call", "电话"
    VISIT = "visit", "上门拜访"
    WECOM = "wecom", "企业微信"
    MEETING = "meeting", "会议"
    OTHER = "other", "其他"


class FollowUp(TenantModel):
    """A follow-up an employee recorded (跟进记录), with the next one promised, which a timer
    reminds them of."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="follow_ups")
    employee = models.ForeignKey(
        "org.Employee", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(
        "方式", max_length=10, choices=FollowUpKind.choices, default=FollowUpKind.CALL
    )
    content = models.TextField("内容", max_length=2000)
    happened_at = models.DateTimeField("跟进时间")
    next_at = models.DateTimeField("下次跟进", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    scope_fields = ScopeFields(
        owner="customer__owner", department="customer__department", region="customer__region"
    )

    class Meta:
        verbose_name = "跟进记录"
        verbose_name_plural = "跟进记录"
        ordering = ["-happened_at", "-id"]
        indexes = [models.Index(fields=["tenant", "customer", "happened_at"], name="follow_up_by")]

    def __str__(self) -> str:
        return f"{self.customer_id}@{self.happened_at:%Y-%m-%d}"


class OwnershipChangeKind(models.TextChoices):
    CLAIM = "claim", "从公海领取"
    ASSIGN = "assign", "分配"
    RELEASE = "release", "放回公海"
    AUTO_RETURN = "auto_return", "超期未跟进退回公海"
    TRANSFER = "transfer", "在职转接"
    RESIGNATION = "resignation", "离职继承"


class OwnershipChange(TenantModel):
    """Every change of a customer's owner, with why: the history the pool and handover rules
    read (claims today, who had it before) and the log a manager reads."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="ownership_changes"
    )
    kind = models.CharField("类型", max_length=12, choices=OwnershipChangeKind.choices)
    from_owner = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_owner = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField("原因", max_length=200, blank=True, default="")
    handover = models.ForeignKey(
        "Handover", null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField("时间")

    scope_fields = ScopeFields(
        owner="customer__owner", department="customer__department", region="customer__region"
    )

    class Meta:
        verbose_name = "负责人变更"
        verbose_name_plural = "负责人变更"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "customer", "at"], name="ownership_by_customer"),
            models.Index(fields=["tenant", "to_owner", "kind", "at"], name="ownership_claims"),
        ]


class Handover(TenantModel):
    """One handover of many customers from one employee to another: on resignation (离职继承)
    or in service (在职转接)."""

    kind = models.CharField(
        "类型",
        max_length=12,
        choices=[
            (OwnershipChangeKind.TRANSFER.value, OwnershipChangeKind.TRANSFER.label),
            (OwnershipChangeKind.RESIGNATION.value, OwnershipChangeKind.RESIGNATION.label),
        ],
    )
    from_employee = models.ForeignKey("org.Employee", on_delete=models.PROTECT, related_name="+")
    to_employee = models.ForeignKey("org.Employee", on_delete=models.PROTECT, related_name="+")
    reason = models.CharField("原因", max_length=200)
    customer_count = models.PositiveIntegerField("客户数", default=0)
    by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField("时间")

    scope_fields = ScopeFields(owner="to_employee")

    class Meta:
        verbose_name = "客户交接"
        verbose_name_plural = "客户交接"
        ordering = ["-at", "-id"]


# --- segments and scoring --------------------------------------------------------------------


class Segment(TenantModel):
    """A saved filter (人群): `conditions` in the customers.conditions language. Members are the
    active customers matching it that the reader may see; later modules use it as an audience."""

    name = models.CharField("名称", max_length=100)
    description = models.CharField("说明", max_length=200, blank=True, default="")
    conditions = models.JSONField("条件")
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "客户分群"
        verbose_name_plural = "客户分群"
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="segment_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class ScoreSignal(TenantModel):
    """One weighted signal of the customer score: customers matching `conditions` get `points`
    (negative points lower the score). The score is the sum, and its breakdown lists each
    signal with whether it matched."""

    name = models.CharField("名称", max_length=100)
    conditions = models.JSONField("条件")
    points = models.IntegerField("分值")
    enabled = models.BooleanField("启用", default=True)
    sort = models.IntegerField("排序", default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "评分项"
        verbose_name_plural = "评分项"
        ordering = ["sort", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="score_signal_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


# --- import jobs -----------------------------------------------------------------------------


class ImportStatus(models.TextChoices):
    PENDING = "pending", "排队中"
    VALIDATING = "validating", "校验中"
    WRITING = "writing", "写入中"
    DONE = "done", "已完成"
    FAILED = "failed", "失败"


class ImportJob(TenantModel):
    """One upload of a customer file, run in the background. `processed_rows` of `total_rows`
    is the progress; `errors` the row-level report [{row, column, value, reason}]. With
    `skip_invalid` off, one bad row means nothing is written."""

    file_name = models.CharField("文件名", max_length=200)
    content = models.BinaryField("文件内容", editable=False)
    mapping = models.JSONField("列映射", default=dict, blank=True)
    skip_invalid = models.BooleanField("跳过错误行", default=False)
    status = models.CharField(
        "状态", max_length=12, choices=ImportStatus.choices, default=ImportStatus.PENDING
    )
    total_rows = models.PositiveIntegerField("总行数", default=0)
    processed_rows = models.PositiveIntegerField("已处理行数", default=0)
    created_count = models.PositiveIntegerField("新建", default=0)
    updated_count = models.PositiveIntegerField("合入已有", default=0)
    skipped_count = models.PositiveIntegerField("跳过", default=0)
    errors = models.JSONField("错误", default=list, blank=True)
    message = models.CharField("说明", max_length=500, blank=True, default="")
    created_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    scope_fields = ScopeFields(owner="created_by")

    class Meta:
        verbose_name = "客户导入"
        verbose_name_plural = "客户导入"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.file_name
