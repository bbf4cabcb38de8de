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
