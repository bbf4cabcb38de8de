"""Business calendars as data: which calendar a case gets (its region, the nearest parent region
with one, the tenant default, the built-in one in the local time zone), SLA due dates that follow
it, the lookup cache (cleared by a save here, expiring for other processes), the API, and node
statistics measured in working time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Forbidden
from jingwei.flows import calendars, services
from jingwei.flows.calendar import (
    STANDARD_HOURS,
    BusinessCalendar,
    CalendarError,
    add_working_time,
    default_calendar,
)
from jingwei.flows.calendars import calendar_for, calendar_put
from jingwei.flows.models import Task, TaskStatus, Token, WorkCalendar
from jingwei.flows.selectors import node_statistics
from jingwei.org.models import Region
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant

pytestmark = pytest.mark.django_db

SH = ZoneInfo("Asia/Shanghai")
LONG_DAYS = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")}
MORNINGS = {day: [["09:00", "12:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}

FLOW = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:jw="http://jingwei.example/schema/bpmn" id="Defs" targetNamespace="http://x">
  <bpmn:process id="sla_two" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="Task_Working" name="工作时间两小时">
      <bpmn:extensionElements><jw:sla duration="PT2H" calendar="working" /></bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="Task_Wall" name="自然时间两小时">
      <bpmn:extensionElements><jw:sla duration="PT2H" calendar="calendar" /></bpmn:extensionElements>
      <bpmn:incoming>F2</bpmn:incoming><bpmn:outgoing>F3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="End"><bpmn:incoming>F3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Task_Working" />
    <bpmn:sequenceFlow id="F2" sourceRef="Task_Working" targetRef="Task_Wall" />
    <bpmn:sequenceFlow id="F3" sourceRef="Task_Wall" targetRef="End" />
  </bpmn:process>
</bpmn:definitions>
"""


def put(admin, region: Region | None, hours: dict[str, Any], **spec: Any) -> WorkCalendar:
    name = f"{region.name if region else '公司'}日历"
    return calendar_put(
        actor=actor_for(admin),
        name=name,
        region_id=region.pk if region else None,
        spec={"hours": hours, **spec},
    )


def hours_of(calendar: BusinessCalendar) -> dict[str, Any]:
    return calendar.to_dict()["hours"]


@pytest.fixture
def flow(admin):
    actor = actor_for(admin)
    services.definition_save(actor=actor, key="sla_two", name="两个时限", xml=FLOW)
    return services.definition_publish(actor=actor, key="sla_two")


@pytest.fixture
def at(monkeypatch):
    """Set the clock the engine reads (`django.utils.timezone.now`)."""

    def set_now(moment: datetime) -> datetime:
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    return set_now


def start(admin, region: Region | None) -> Task:
    instance = services.instance_start(
        actor=actor_for(admin), key="sla_two", region_id=region.pk if region else None
    )
    return Task.objects.get(instance=instance, status=TaskStatus.OPEN)


# --- which calendar --------------------------------------------------------------------------


def test_lookup_takes_the_region_then_its_parents_then_the_tenant_default_then_the_builtin(
    org, admin
):
    put(admin, org.east, LONG_DAYS)
    put(admin, None, MORNINGS)

    # 浦东 has none, nor has 上海: 华东's
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == LONG_DAYS
    put(admin, org.shanghai, {"sun": [["10:00", "16:00"]]})
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == {"sun": [["10:00", "16:00"]]}
    assert hours_of(calendar_for(org.tenant.pk, org.east)) == LONG_DAYS
    # 广州 and cases without a region: the tenant default
    assert hours_of(calendar_for(org.tenant.pk, org.guangzhou)) == MORNINGS
    assert hours_of(calendar_for(org.tenant.pk, None)) == MORNINGS

    WorkCalendar.objects.get(tenant=org.tenant, region=None).delete()
    assert calendar_for(org.tenant.pk, org.guangzhou) == default_calendar()
    assert calendar_for(org.tenant.pk, None) == default_calendar()


def test_another_tenants_calendars_never_apply(org, admin, other_org, other_admin):
    put(other_admin, None, LONG_DAYS)
    put(other_admin, other_org.east, LONG_DAYS)

    assert calendar_for(org.tenant.pk, org.pudong) == default_calendar()
    assert calendar_for(org.tenant.pk, None) == default_calendar()
    assert hours_of(calendar_for(other_org.tenant.pk, other_org.pudong)) == LONG_DAYS


def test_without_a_stored_calendar_the_builtin_one_keeps_local_time(org, admin):
    tokyo = Region.objects.create(tenant=org.tenant, name="东京", timezone="Asia/Tokyo")
    tokyo.save_path()
    org.tenant.timezone = "Europe/Berlin"
    org.tenant.save()

    in_tokyo = calendar_for(org.tenant.pk, tokyo)
    assert (in_tokyo.timezone, in_tokyo.hours, in_tokyo.public_holidays) == (
        "Asia/Tokyo",
        STANDARD_HOURS,
        "cn",
    )
    # A region left at the default zone, or no region: the tenant's zone
    assert calendar_for(org.tenant.pk, org.pudong).timezone == "Europe/Berlin"
    assert calendar_for(org.tenant.pk, None).timezone == "Europe/Berlin"
    # A stored calendar says its own zone
    put(admin, org.east, LONG_DAYS, timezone="Asia/Shanghai")
    assert calendar_for(org.tenant.pk, org.pudong).timezone == "Asia/Shanghai"


def test_a_lookup_reads_one_query_and_a_repeated_one_none(org, admin, django_assert_num_queries):
    put(admin, org.east, LONG_DAYS)
    put(admin, None, MORNINGS)
    calendars.clear_cache()

    with django_assert_num_queries(1):
        found = calendar_for(org.tenant.pk, org.pudong)
    with django_assert_num_queries(0):
        assert calendar_for(org.tenant.pk, org.pudong) is found
    with django_assert_num_queries(1):
        assert hours_of(calendar_for(org.tenant.pk, None)) == MORNINGS


# --- SLA due dates ---------------------------------------------------------------------------


def test_a_region_with_longer_hours_gets_an_earlier_due_date(org, admin, flow, at):
    put(admin, org.east, LONG_DAYS)  # Mon–Sat 08:00–20:00
    created = at(datetime(2026, 11, 28, 10, tzinfo=SH))  # a Saturday morning

    in_pudong = start(admin, org.pudong)
    in_guangzhou = start(admin, org.guangzhou)

    # 浦东 (under 华东) works on Saturdays: two hours later the same day
    assert in_pudong.due_at == datetime(2026, 11, 28, 12, tzinfo=SH)
    # 广州 has the built-in calendar: Monday 09:00 + 2 h
    assert in_guangzhou.due_at == datetime(2026, 11, 30, 11, tzinfo=SH)
    assert in_guangzhou.due_at == add_working_time(created, timedelta(hours=2), default_calendar())


def test_an_edited_calendar_is_used_by_the_next_task(org, admin, flow, at):
    put(admin, org.east, LONG_DAYS)
    at(datetime(2026, 11, 28, 10, tzinfo=SH))  # Saturday
    assert start(admin, org.pudong).due_at == datetime(2026, 11, 28, 12, tzinfo=SH)

    put(admin, org.east, {"mon": [["07:00", "19:00"]]})  # replaced: Mondays only, from 07:00

    assert start(admin, org.pudong).due_at == datetime(2026, 11, 30, 9, tzinfo=SH)
    WorkCalendar.objects.get(region=org.east).delete()
    assert start(admin, org.pudong).due_at == datetime(2026, 11, 30, 11, tzinfo=SH)


def test_changes_by_another_process_are_seen_once_the_cached_entry_expires(org, admin, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(calendars.time, "monotonic", lambda: clock[0])
    stored = put(admin, org.east, LONG_DAYS)
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == LONG_DAYS

    # Another process writes: no signal reaches this one.
    WorkCalendar.objects.filter(pk=stored.pk).update(spec={**stored.spec, "hours": MORNINGS})
    clock[0] += calendars.CACHE_SECONDS - 1
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == LONG_DAYS
    clock[0] += 2
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == MORNINGS


# --- services and API ------------------------------------------------------------------------


def test_put_creates_then_replaces_and_delete_falls_back(org, admin, client_as):
    client = client_as(admin)
    body = {"name": "华东日历", "region_id": org.east.pk, "hours": LONG_DAYS}

    created = client.put("/api/flows/calendars", body, content_type="application/json")
    assert created.status_code == 200, created.content
    data = created.json()
    assert data["region_id"] == org.east.pk
    assert data["hours"] == LONG_DAYS
    assert (data["timezone"], data["public_holidays"]) == ("Asia/Shanghai", "cn")
    assert (data["holidays"], data["workdays"]) == ([], {})

    replaced = client.put(
        "/api/flows/calendars",
        {
            **body,
            "name": "华东（新）",
            "hours": {"mon": [["13:00", "18:00"], ["09:00", "12:00"]]},
            "public_holidays": None,
            "holidays": ["2026-12-31"],
            "workdays": {"2026-12-26": "fri"},
            "timezone": "Asia/Hong_Kong",
        },
        content_type="application/json",
    )
    assert replaced.status_code == 200, replaced.content
    again = replaced.json()
    assert again["id"] == data["id"]
    assert again["name"] == "华东（新）"
    assert again["hours"] == {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}  # in order
    assert again["public_holidays"] is None
    assert (again["holidays"], again["workdays"]) == (["2026-12-31"], {"2026-12-26": "fri"})
    assert again["timezone"] == "Asia/Hong_Kong"
    assert WorkCalendar.objects.filter(tenant=org.tenant).count() == 1

    default = client.put(
        "/api/flows/calendars",
        {"name": "公司默认", "region_id": None, "hours": MORNINGS},
        content_type="application/json",
    ).json()
    listed = client.get("/api/flows/calendars").json()
    assert [c["id"] for c in listed] == [default["id"], data["id"]]  # the default first
    assert client.get(f"/api/flows/calendars/{data['id']}").json() == again

    deleted = client.delete(f"/api/flows/calendars/{data['id']}")
    assert deleted.status_code == 204
    assert client.get(f"/api/flows/calendars/{data['id']}").status_code == 404
    assert hours_of(calendar_for(org.tenant.pk, org.pudong)) == MORNINGS

    actions = list(
        AuditEvent.objects.filter(tenant=org.tenant, action__startswith="flows.calendar.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "flows.calendar.created",
        "flows.calendar.replaced",
        "flows.calendar.created",
        "flows.calendar.deleted",
    ]


def test_a_calendar_without_a_time_zone_takes_its_regions(org, admin):
    hk = Region.objects.create(
        tenant=org.tenant, name="香港", parent=org.south, timezone="Asia/Hong_Kong"
    )
    hk.save_path()
    assert put(admin, hk, MORNINGS).spec["timezone"] == "Asia/Hong_Kong"
    assert put(admin, None, MORNINGS).spec["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize(
    "change,field",
    [
        ({"hours": {"mon": [["09:00", "25:00"]]}}, "hours.mon.0.1"),
        ({"hours": {"mon": [["9 点", "12:00"]]}}, "hours.mon.0.0"),
        ({"hours": {"tue": [["12:00", "09:00"]]}}, "hours.tue.0"),
        ({"hours": {"wed": [["09:00", "12:00"], ["11:00", "13:00"]]}}, "hours.wed.1"),
        ({"hours": {"mon": [["09:00"]]}}, "hours.mon.0"),
        ({"hours": {"someday": [["09:00", "12:00"]]}}, "hours.someday"),
        ({"holidays": ["2026-02-30"]}, "holidays.0"),
        ({"holidays": ["2026-12-26"], "workdays": {"2026-12-26": "mon"}}, "workdays.2026-12-26"),
        ({"workdays": {"明天": "mon"}}, "workdays.明天"),
        ({"workdays": {"2026-12-26": "someday"}}, "workdays.2026-12-26"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"hours": {}}, "hours"),  # no working time: working-time SLAs would never fall due
        ({"hours": {"sun": []}, "workdays": {"2026-12-26": "sun"}}, "hours"),
        ({"public_holidays": "us"}, "public_holidays"),
    ],
)
def test_a_bad_calendar_is_422_naming_the_field_and_stores_nothing(
    org, admin, client_as, change, field
):
    body = {"name": "坏日历", "region_id": org.east.pk, "hours": MORNINGS, **change}

    r = client_as(admin).put("/api/flows/calendars", body, content_type="application/json")

    assert r.status_code == 422, r.content
    assert r.json()["field"] == field, r.json()
    assert not WorkCalendar.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="flows.calendar.").exists()


def test_the_service_names_the_field_too(org, admin):
    with pytest.raises(CalendarError) as caught:
        put(admin, org.east, {"fri": [["17:00", "24:01"]]})
    assert caught.value.field == "hours.fri.0.1"
    assert caught.value.status == 422


def test_another_tenants_region_or_calendar_is_like_a_missing_one(
    org, admin, other_org, other_admin, client_as
):
    theirs = put(other_admin, other_org.east, LONG_DAYS)
    client = client_as(admin)

    r = client.put(
        "/api/flows/calendars",
        {"name": "越界", "region_id": other_org.east.pk, "hours": MORNINGS},
        content_type="application/json",
    )
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        400,
        "invalid_reference",
        "region_id",
    )
    assert client.get(f"/api/flows/calendars/{theirs.pk}").status_code == 404
    assert client.delete(f"/api/flows/calendars/{theirs.pk}").status_code == 404
    assert client.get("/api/flows/calendars").json() == []
    assert WorkCalendar.objects.get(pk=theirs.pk).spec == theirs.spec


def test_writing_a_calendar_needs_company_wide_flow_manage(org, admin):
    viewer = EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.east)
    grant(viewer, ["flow.view"], "tenant")
    regional = EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.east)
    grant(regional, ["flow.view", "flow.manage"], "region", region=org.east)
    mine = put(admin, org.east, LONG_DAYS)

    assert list(calendars.calendars_list(actor=actor_for(viewer))) == [mine]
    for person in (viewer, regional):
        with pytest.raises(Forbidden):
            calendar_put(
                actor=actor_for(person), name="x", region_id=org.east.pk, spec={"hours": MORNINGS}
            )
        with pytest.raises(Forbidden):
            calendars.calendar_delete(actor=actor_for(person), calendar_id=mine.pk)


# --- statistics ------------------------------------------------------------------------------


def _passed(flow, node_id: str, arrived: datetime, left: datetime, region: Region | None):
    instance = services.instance_start(
        actor=actor_for(flow.published_by), key="sla_two", region_id=region.pk if region else None
    )
    Token.objects.create(
        tenant=instance.tenant,
        instance=instance,
        node_id=node_id,
        status="done",
        arrived_at=arrived,
        left_at=left,
    )


def test_statistics_count_working_time_for_working_time_slas(org, admin, flow):
    put(admin, org.east, LONG_DAYS)
    evening = datetime(2026, 11, 23, 17, tzinfo=SH)  # Monday 17:00
    next_morning = datetime(2026, 11, 24, 10, tzinfo=SH)  # Tuesday 10:00: 17 hours later
    _passed(flow, "Task_Working", evening, next_morning, org.guangzhou)  # 17–18, 09–10: 2 h
    _passed(flow, "Task_Working", evening, next_morning, None)  # the same (built-in)
    _passed(flow, "Task_Working", evening, next_morning, org.pudong)  # 17–20, 08–10: 5 h
    _passed(flow, "Task_Wall", evening, next_morning, org.guangzhou)  # wall clock: 17 h

    stats = {row["node_id"]: row for row in node_statistics(flow)}

    working, wall = stats["Task_Working"], stats["Task_Wall"]
    assert working["time_basis"] == "working"
    assert working["count"] == 3
    assert working["average_seconds"] == pytest.approx(3 * 3600)
    assert (working["p50_seconds"], working["p90_seconds"]) == (2 * 3600, 5 * 3600)
    assert working["target_seconds"] == 2 * 3600
    assert working["bottleneck"] is True
    assert wall["time_basis"] == "calendar"
    assert wall["average_seconds"] == 17 * 3600
    assert wall["bottleneck"] is True
    assert stats["Start"]["time_basis"] == "calendar"


def test_statistics_answer_says_the_time_basis(org, admin, flow, client_as):
    r = client_as(admin).get(f"/api/flows/versions/{flow.pk}/statistics")

    assert r.status_code == 200, r.content
    bases = {row["node_id"]: row["time_basis"] for row in r.json()}
    assert bases == {
        "Start": "calendar",
        "Task_Working": "working",
        "Task_Wall": "calendar",
        "End": "calendar",
    }
