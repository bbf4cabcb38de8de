"""The flow engine's relational state: definitions and their immutable versions, instances, the
tokens that mark where an instance stands, user tasks, and an event row per transition.

"My tasks", "overdue" and "time spent per node" are plain indexed queries over these tables.
The engine imports no domain app: a case (a ticket, an approval) links to its instance through
`business_key`, and gives the engine its data, region, department and owner.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from jingwei.core.models import TenantModel
from jingwei.org.scope import ScopeFields


class ProcessDefinition(TenantModel):
    """A flow the business draws (e.g. 售后维修 SOP). The draft is edited; versions are published."""

    key = models.SlugField("流程标识", max_length=100)
    name = models.CharField("名称", max_length=100)
    draft_xml = models.TextField("草稿 BPMN", blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "流程定义"
        verbose_name_plural = "流程定义"
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="flow_definition_key_per_tenant")
        ]

    def __str__(self) -> str:
        return self.name


class ProcessVersion(TenantModel):
    """An immutable published version: the XML as drawn and the compiled spec the engine runs."""

    definition = models.ForeignKey(
        ProcessDefinition, on_delete=models.PROTECT, related_name="versions"
    )
    number = models.PositiveIntegerField("版本号")
    xml = models.TextField()
    spec = models.JSONField()
    published_at = models.DateTimeField()
    published_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "流程版本"
        verbose_name_plural = "流程版本"
        ordering = ["definition", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "definition", "number"], name="flow_version_number_per_definition"
            )
        ]

    def __str__(self) -> str:
        return f"{self.definition.name} v{self.number}"


class InstanceStatus(models.TextChoices):
    RUNNING = "running", "进行中"
    COMPLETED = "completed", "已完成"
    CANCELLED = "cancelled", "已取消"
    FAILED = "failed", "异常"


class Instance(TenantModel):
    version = models.ForeignKey(ProcessVersion, on_delete=models.PROTECT, related_name="instances")
    business_key = models.CharField("业务编号", max_length=100, blank=True, default="")
    status = models.CharField(
        max_length=12, choices=InstanceStatus.choices, default=InstanceStatus.RUNNING
    )
    data = models.JSONField("案件数据", default=dict, blank=True)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    department = models.ForeignKey(
        "org.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A sub-flow started by a call activity resumes its parent's token when it ends.
    parent_token = models.ForeignKey(
        "Token", null=True, blank=True, on_delete=models.SET_NULL, related_name="sub_instances"
    )
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    scope_fields = ScopeFields(owner="owner", department="department", region="region")

    class Meta:
        verbose_name = "流程实例"
        verbose_name_plural = "流程实例"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["tenant", "business_key"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.business_key}"


class TokenStatus(models.TextChoices):
    ACTIVE = "active", "停留中"
    DONE = "done", "已离开"
    CANCELLED = "cancelled", "已取消"


class Token(TenantModel):
    """Where an instance stands: one row per active position (several after a parallel fork)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="tokens")
    node_id = models.CharField(max_length=100)
    via_flow = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(
        max_length=10, choices=TokenStatus.choices, default=TokenStatus.ACTIVE
    )
    arrived_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["instance", "node_id"], name="token_active", condition=Q(status="active")
            ),
            models.Index(fields=["tenant", "node_id", "left_at"], name="token_node_time"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}@{self.node_id}"


class TaskStatus(models.TextChoices):
    OPEN = "open", "待处理"
    COMPLETED = "completed", "已完成"
    CANCELLED = "cancelled", "已取消"


class Task(TenantModel):
    """A user task waiting for a person: the "my tasks" row."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="tasks")
    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="tasks")
    node_id = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    form_key = models.CharField(max_length=100, blank=True, default="")
    assignee = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    outcome = models.CharField(max_length=50, blank=True, default="")
    due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    scope_fields = ScopeFields(
        owner="assignee", department="instance__department", region="instance__region"
    )

    class Meta:
        verbose_name = "任务"
        verbose_name_plural = "任务"
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(
                fields=["tenant", "assignee"],
                name="task_open_by_assignee",
                condition=Q(status="open"),
            ),
            models.Index(
                fields=["tenant", "due_at"], name="task_open_by_due", condition=Q(status="open")
            ),
            # round robin: the latest task of a node, read backwards (assignment.next_in_turn)
            models.Index(fields=["tenant", "node_id", "id"], name="task_by_node"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def candidate_ids(self) -> list[int]:
        return sorted(self.candidate_rows.values_list("employee_id", flat=True))


class TaskCandidate(TenantModel):
    """Someone who may claim a pooled task: a row, so "tasks I can claim" is an indexed query."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="candidate_rows")
    employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "task", "employee"], name="task_candidate_unique"
            )
        ]
        indexes = [models.Index(fields=["tenant", "employee"], name="task_candidate_by_employee")]

    def __str__(self) -> str:
        return f"{self.task_id}:{self.employee_id}"


class FlowEvent(TenantModel):
    """One row per transition or task action: the instance's event log and timeline."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=50)
    node_id = models.CharField(max_length=100, blank=True, default="")
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        "org.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["instance", "at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.node_id}"


class WorkCalendar(TenantModel):
    """A business calendar kept as data (`flows.calendars`): the tenant's default when `region` is
    empty, else a region's, which also covers the regions below it that have none of their own.
    `spec` is the JSON form of `calendar.BusinessCalendar` (`to_dict()`), validated on save."""

    name = models.CharField("名称", max_length=100)
    region = models.ForeignKey(
        "org.Region", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    spec = models.JSONField("日历")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "工作日历"
        verbose_name_plural = "工作日历"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "region"], name="work_calendar_per_region"),
            # NULLs are distinct in the one above: at most one default per tenant needs its own.
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(region__isnull=True),
                name="work_calendar_tenant_default",
            ),
        ]

    def __str__(self) -> str:
        return self.name
