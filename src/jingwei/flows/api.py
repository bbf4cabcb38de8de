"""Flow engine API: definitions (drafts, publish, export), versions, instances, my tasks and task
actions, statistics. Thin: parse, call a service, serialise."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from jingwei.core.api import DB_INT_MAX, AuthedRequest, Filters, In, Page, TimeZoneName
from jingwei.core.errors import NotFound

from . import calendars, services
from .models import (
    FlowEvent,
    Instance,
    ProcessDefinition,
    ProcessVersion,
    Task,
    TaskCandidate,
    WorkCalendar,
)
from .selectors import node_statistics

router = Router(tags=["流程引擎"])

Key = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
Id = Field(..., ge=1, le=DB_INT_MAX)


class DefinitionOut(Schema):
    id: int
    key: str
    name: str
    updated_at: datetime
    latest_version: int | None

    @staticmethod
    def resolve_latest_version(obj: ProcessDefinition) -> int | None:
        return obj.versions.order_by("-number").values_list("number", flat=True).first()


class DefinitionDetailOut(DefinitionOut):
    draft_xml: str


class DefinitionIn(In):
    key: str = Key
    name: str = Field(..., min_length=1, max_length=100)
    xml: str = Field(..., max_length=150_000, description="BPMN 2.0 XML（bpmn-js 导出的格式）")


class VersionOut(Schema):
    id: int
    number: int
    published_at: datetime
    published_by_id: int | None


@router.get("/definitions", response=list[DefinitionOut], summary="流程定义")
def list_definitions(request: AuthedRequest) -> QuerySet[ProcessDefinition]:
    request.actor.require(services.VIEW)
    return ProcessDefinition.objects.visible_to(request.actor, services.VIEW)


@router.post("/definitions", response={201: DefinitionDetailOut}, summary="新建流程或保存草稿")
def save_definition(request: AuthedRequest, payload: DefinitionIn) -> Status[ProcessDefinition]:
    return Status(201, services.definition_save(actor=request.actor, **payload.model_dump()))


def _definition(request: AuthedRequest, definition_id: int) -> ProcessDefinition:
    return services.definition_get(actor=request.actor, definition_id=definition_id)


@router.get(
    "/definitions/{definition_id}", response=DefinitionDetailOut, summary="流程定义详情（含草稿）"
)
def get_definition(request: AuthedRequest, definition_id: int) -> ProcessDefinition:
    return _definition(request, definition_id)


@router.post(
    "/definitions/{definition_id}/publish", response={201: VersionOut}, summary="校验并发布新版本"
)
def publish_definition(request: AuthedRequest, definition_id: int) -> Status[ProcessVersion]:
    key = _definition(request, definition_id).key
    return Status(201, services.definition_publish(actor=request.actor, key=key))


@router.get(
    "/definitions/{definition_id}/versions", response=list[VersionOut], summary="已发布版本"
)
def list_versions(request: AuthedRequest, definition_id: int) -> QuerySet[ProcessVersion]:
    return _definition(request, definition_id).versions.all()


def _version(request: AuthedRequest, version_id: int) -> ProcessVersion:
    request.actor.require(services.VIEW)
    found = (
        ProcessVersion.objects.visible_to(request.actor, services.VIEW)
        .select_related("definition")
        .filter(pk=version_id)
        .first()
    )
    if found is None:
        raise NotFound("版本不存在", field="id")
    return found


@router.get("/versions/{version_id}/bpmn", summary="导出该版本的 BPMN XML")
def export_version(request: AuthedRequest, version_id: int) -> HttpResponse:
    version = _version(request, version_id)
    response = HttpResponse(version.xml, content_type="application/xml; charset=utf-8")
    name = f"{version.definition.key}-v{version.number}.bpmn"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class NodeStatOut(Schema):
    node_id: str
    name: str
    type: str
    count: int
    average_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None
    target_seconds: float | None
    overdue_rate: float | None
    bottleneck: bool
    time_basis: Literal["working", "calendar"] = Field(
        ...,
        description="用时口径：working 按工作日历的工作时间（与工作时间 SLA 可比），calendar 按自然时间",
    )


@router.get(
    "/versions/{version_id}/statistics", response=list[NodeStatOut], summary="各节点用时统计与瓶颈"
)
def version_statistics(request: AuthedRequest, version_id: int) -> list[dict[str, Any]]:
    return node_statistics(_version(request, version_id))


class MigrateIn(In):
    from_number: int = Field(..., ge=1, le=2**31 - 1)
    to_number: int = Field(..., ge=1, le=2**31 - 1)


class MigrateOut(Schema):
    moved: list[int]
    refused: list[dict[str, Any]]


@router.post(
    "/definitions/{definition_id}/migrate",
    response=MigrateOut,
    summary="把运行中的实例迁移到新版本",
)
def migrate_instances(
    request: AuthedRequest, definition_id: int, payload: MigrateIn
) -> dict[str, Any]:
    key = _definition(request, definition_id).key
    return services.instances_migrate(actor=request.actor, key=key, **payload.model_dump())


# --- instances -------------------------------------------------------------------------------


class InstanceOut(Schema):
    id: int
    key: str = Field(..., alias="version.definition.key")
    version: int = Field(..., alias="version.number")
    business_key: str
    status: str
    data: dict[str, Any]
    region_id: int | None
    department_id: int | None
    owner_id: int | None
    started_at: datetime
    ended_at: datetime | None
    active_nodes: list[str]

    @staticmethod
    def resolve_active_nodes(obj: Instance) -> list[str]:
        return sorted(obj.tokens.filter(status="active").values_list("node_id", flat=True))


class FlowEventOut(Schema):  # not EventOut: the customers API has one
    id: int
    at: datetime
    kind: str
    node_id: str
    task_id: int | None
    actor_id: int | None
    data: dict[str, Any]


class InstanceDetailOut(InstanceOut):
    events: list[FlowEventOut]

    @staticmethod
    def resolve_events(obj: Instance) -> QuerySet[FlowEvent]:
        return obj.events.all()


class StartIn(In):
    key: str = Key
    data: dict[str, Any] = Field(default_factory=dict)
    business_key: str = Field("", max_length=100)
    region_id: int | None = Field(None, ge=1, le=DB_INT_MAX)
    department_id: int | None = Field(None, ge=1, le=DB_INT_MAX)


class MessageIn(In):
    message: str = Field(..., min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)


class InstanceFilters(Filters):
    key: str | None = Field(None, max_length=100)
    status: str | None = Field(None, max_length=12)
    business_key: str | None = Field(None, max_length=100)


@router.get("/instances", response=list[InstanceOut], summary="流程实例（按数据范围）")
@paginate(Page)
def list_instances(request: AuthedRequest, filters: Query[InstanceFilters]) -> QuerySet[Instance]:
    request.actor.require(services.VIEW)
    qs = Instance.objects.visible_to(request.actor, services.VIEW).select_related(
        "version__definition"
    )
    if filters.key:
        qs = qs.filter(version__definition__key=filters.key)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.business_key:
        qs = qs.filter(business_key=filters.business_key)
    return qs


@router.post("/instances", response={201: InstanceDetailOut}, summary="发起流程")
def start_instance(request: AuthedRequest, payload: StartIn) -> Status[Instance]:
    instance = services.instance_start(actor=request.actor, **payload.model_dump())
    return Status(201, services.instance_get(actor=request.actor, instance_id=instance.pk))


@router.get("/instances/{instance_id}", response=InstanceDetailOut, summary="实例详情与事件日志")
def get_instance(request: AuthedRequest, instance_id: int) -> Instance:
    return services.instance_get(actor=request.actor, instance_id=instance_id)


@router.post(
    "/instances/{instance_id}/messages", response=InstanceDetailOut, summary="发送消息（外部信号）"
)
def send_message(request: AuthedRequest, instance_id: int, payload: MessageIn) -> Instance:
    services.instance_message(actor=request.actor, instance_id=instance_id, **payload.model_dump())
    return services.instance_get(actor=request.actor, instance_id=instance_id)


class CancelIn(In):
    reason: str = Field(..., min_length=1, max_length=200)


@router.post("/instances/{instance_id}/cancel", response=InstanceDetailOut, summary="撤销流程实例")
def cancel_instance(request: AuthedRequest, instance_id: int, payload: CancelIn) -> Instance:
    services.instance_cancel(actor=request.actor, instance_id=instance_id, reason=payload.reason)
    return services.instance_get(actor=request.actor, instance_id=instance_id)


# --- tasks -----------------------------------------------------------------------------------


class TaskOut(Schema):
    id: int
    instance_id: int
    node_id: str
    name: str
    form_key: str
    assignee_id: int | None
    candidates: list[int] = Field(..., alias="candidate_ids")
    status: str
    outcome: str
    due_at: datetime | None
    created_at: datetime
    completed_at: datetime | None


class TaskFilters(Filters):
    status: str | None = Field("open", max_length=10)
    mine: bool = Field(True, description="只看分给我或我可认领的")


class CompleteIn(In):
    outcome: str = Field("", max_length=50)
    data: dict[str, Any] = Field(default_factory=dict)


class ReassignIn(In):
    assignee_id: int = Id
    reason: str = Field(..., min_length=1, max_length=200)


class ReasonIn(In):
    reason: str = Field("", max_length=200)


@router.get("/tasks", response=list[TaskOut], summary="我的任务 / 任务列表")
@paginate(Page)
def list_tasks(request: AuthedRequest, filters: Query[TaskFilters]) -> QuerySet[Task]:
    actor = request.actor
    if filters.mine:
        claimable = TaskCandidate.objects.filter(
            tenant_id=actor.tenant_id, employee_id=actor.employee_id
        ).values("task_id")
        qs = Task.objects.filter(tenant_id=actor.tenant_id).filter(
            Q(assignee_id=actor.employee_id) | Q(assignee__isnull=True, pk__in=claimable)
        )
    else:
        actor.require(services.VIEW)
        qs = Task.objects.visible_to(actor, services.VIEW)
    if filters.status:
        qs = qs.filter(status=filters.status)
    return qs


@router.post("/tasks/{task_id}/complete", response=TaskOut, summary="完成任务")
def complete_task(request: AuthedRequest, task_id: int, payload: CompleteIn) -> Task:
    return services.task_complete(actor=request.actor, task_id=task_id, **payload.model_dump())


@router.post("/tasks/{task_id}/claim", response=TaskOut, summary="认领任务")
def claim_task(request: AuthedRequest, task_id: int) -> Task:
    return services.task_claim(actor=request.actor, task_id=task_id)


@router.post("/tasks/{task_id}/release", response=TaskOut, summary="退回任务到候选池")
def release_task(request: AuthedRequest, task_id: int, payload: ReasonIn) -> Task:
    return services.task_release(actor=request.actor, task_id=task_id, reason=payload.reason)


@router.post("/tasks/{task_id}/delegate", response=TaskOut, summary="委派任务")
def delegate_task(request: AuthedRequest, task_id: int, payload: ReassignIn) -> Task:
    return services.task_delegate(actor=request.actor, task_id=task_id, **payload.model_dump())


@router.post("/tasks/{task_id}/transfer", response=TaskOut, summary="改派任务（调度）")
def transfer_task(request: AuthedRequest, task_id: int, payload: ReassignIn) -> Task:
    return services.task_transfer(actor=request.actor, task_id=task_id, **payload.model_dump())


# --- business calendars ----------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Clock = Annotated[str, Field(max_length=8, description="HH:MM 或 HH:MM:SS，24:00 可作结束")]
DateText = Annotated[str, Field(max_length=10, description="YYYY-MM-DD")]
WorkPeriod = Annotated[list[Clock], Field(min_length=2, max_length=2, description="[开始, 结束]")]


class CalendarIn(In):
    """A business calendar in the form `BusinessCalendar.from_dict` takes, with its name and place.
    Times and dates are checked there; a bad one is a 422 naming it (e.g. `hours.mon.0.1`)."""

    name: str = Field(..., min_length=1, max_length=100)
    region_id: int | None = Field(
        ..., ge=1, le=DB_INT_MAX, description="区域（也适用于其下级区域）；null 为全公司默认日历"
    )
    timezone: TimeZoneName | None = Field(
        None, max_length=64, description="IANA 时区；不填则用该区域（或公司）的时区"
    )
    # Keys are checked by from_dict, which names a bad one (`hours.someday`) as pydantic does not.
    hours: dict[str, Annotated[list[WorkPeriod], Field(max_length=48)]] = Field(
        ...,
        max_length=7,
        description="每周各天（mon tue wed thu fri sat sun）的工作时段，"
        '如 {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}；不写的那天休息',
    )
    public_holidays: Literal["cn"] | None = Field(
        "cn", description="cn：按国务院公布的法定节假日放假、调休日上班；null：不用"
    )
    holidays: list[DateText] = Field(
        default_factory=list, max_length=1000, description="额外的休息日"
    )
    workdays: dict[str, Weekday] = Field(
        default_factory=dict,
        max_length=1000,
        description='额外的上班日及按星期几的时段上班，如 {"2026-12-26": "mon"}',
    )


class CalendarOut(Schema):
    id: int
    name: str
    region_id: int | None
    timezone: str
    hours: dict[str, list[list[str]]]
    public_holidays: str | None
    holidays: list[str]
    workdays: dict[str, str]
    updated_at: datetime

    @staticmethod
    def resolve_timezone(obj: WorkCalendar) -> str:
        return str(obj.spec.get("timezone", ""))

    @staticmethod
    def resolve_hours(obj: WorkCalendar) -> Any:
        return obj.spec.get("hours", {})

    @staticmethod
    def resolve_public_holidays(obj: WorkCalendar) -> Any:
        return obj.spec.get("public_holidays")

    @staticmethod
    def resolve_holidays(obj: WorkCalendar) -> Any:
        return obj.spec.get("holidays", [])

    @staticmethod
    def resolve_workdays(obj: WorkCalendar) -> Any:
        return obj.spec.get("workdays", {})


@router.get("/calendars", response=list[CalendarOut], summary="工作日历（公司默认与各区域）")
def list_calendars(request: AuthedRequest) -> QuerySet[WorkCalendar]:
    return calendars.calendars_list(actor=request.actor)


@router.put(
    "/calendars", response=CalendarOut, summary="设置公司默认或某区域的工作日历（整体替换）"
)
def put_calendar(request: AuthedRequest, payload: CalendarIn) -> WorkCalendar:
    data = payload.model_dump()
    name, region_id = data.pop("name"), data.pop("region_id")
    if data["timezone"] is None:
        del data["timezone"]
    return calendars.calendar_put(actor=request.actor, name=name, region_id=region_id, spec=data)


@router.get("/calendars/{calendar_id}", response=CalendarOut, summary="工作日历详情")
def get_calendar(request: AuthedRequest, calendar_id: int) -> WorkCalendar:
    return calendars.calendar_get(actor=request.actor, calendar_id=calendar_id)


@router.delete("/calendars/{calendar_id}", response={204: None}, summary="删除工作日历")
def delete_calendar(request: AuthedRequest, calendar_id: int) -> Status[None]:
    calendars.calendar_delete(actor=request.actor, calendar_id=calendar_id)
    return Status(204, None)
