"""The rules engine end to end: an event in, rules matched, people found, messages rendered,
timed for quiet hours and duty rosters, delivered once, retried, dead-lettered, retried by hand."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from jingwei.core import timers
from jingwei.core.errors import Invalid
from jingwei.notify import delivery as runner
from jingwei.notify.channels import DeliveryError
from jingwei.notify.models import Delivery, DeliveryStatus, Event, Notification, NotifySettings
from jingwei.notify.quiet import quiet_release
from jingwei.notify.services import config, event_publish, events_fan_out, rules
from jingwei.org.models import RoleAssignment
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, make_role
from .engine_helpers import SHANGHAI, at_shanghai, make_rule, make_template
from .engine_helpers import recorder as recorder

pytestmark = pytest.mark.django_db


@pytest.fixture
def supervisors(org: Any) -> dict[str, Any]:
    role = make_role(org.tenant, "客诉主管", ["ticket.view"])
    people = {
        "上海": EmployeeFactory(
            tenant=org.tenant, name="陈静", region=org.shanghai, phone="13800000001"
        ),
        "广州": EmployeeFactory(
            tenant=org.tenant, name="黄磊", region=org.guangzhou, phone="13800000002"
        ),
    }
    for person in people.values():
        RoleAssignment.objects.create(tenant=org.tenant, employee=person, role=role, scope="region")
    return people


def breach(
    org: Any, *, key: str = "sla-1", severity: str = "warning", region: Any = None, **payload: Any
) -> Event:
    return event_publish(
        tenant_id=org.tenant.pk,
        name="ticket.sla.breached",
        key=key,
        severity=severity,
        payload={
            "ticket": {"number": "GD20261124-0007"},
            "customer": {"name": "王建国", "phone": "13912345678"},
            "minutes": 120,
            "region_id": (region or org.pudong).pk,
            **payload,
        },
    )


def deliver_all(now: Any = None) -> None:
    while runner.deliver_due(now=now):
        pass


def inbox_titles(employee: Any) -> list[str]:
    return list(Notification.objects.filter(recipient=employee).values_list("title", flat=True))


@pytest.fixture
def daytime() -> Any:
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        yield


def test_an_event_reaches_the_role_holder_of_its_region_with_the_rendered_message(
    org, admin, supervisors, daytime
):
    make_rule(admin, make_template(admin))
    breach(org)

    deliver_all()

    # 浦东 lies in 上海: 陈静 hears of it, 黄磊 in 广州 does not.
    assert inbox_titles(supervisors["上海"]) == ["客诉 GD20261124-0007 待处理"]
    assert inbox_titles(supervisors["广州"]) == []
    note = Notification.objects.get(recipient=supervisors["上海"])
    assert note.body == "客户 王建国 的投诉已 120 分钟未处理。"
    assert note.kind == "ticket.sla.breached"


def test_severity_chooses_the_channels(org, admin, supervisors, recorder, daytime):
    make_rule(
        admin,
        make_template(admin),
        channels={"warning": ["inapp"], "urgent": ["inapp", "recorder"]},
    )
    breach(org, key="warning", severity="warning")
    breach(org, key="urgent", severity="urgent")

    deliver_all()

    # Both reach the inbox; only the urgent one also goes to the phone channel, to 陈静's number.
    assert len(inbox_titles(supervisors["上海"])) == 2
    assert [m.address for m in recorder.sent] == ["13800000001"]
    assert recorder.sent[0].severity == "urgent"


def test_a_condition_on_the_payload_filters_events(org, admin, supervisors, daytime):
    make_rule(admin, make_template(admin), condition="minutes >= 120")
    breach(org, key="late", minutes=120)
    breach(org, key="early", minutes=30)

    deliver_all()

    assert len(inbox_titles(supervisors["上海"])) == 1


def test_a_rule_for_a_prefix_matches_every_event_under_it(org, admin, supervisors, daytime):
    make_rule(admin, make_template(admin), event="ticket.*")
    breach(org)
    event_publish(tenant_id=org.tenant.pk, name="customer.created", key="c1", payload={})

    deliver_all()

    assert len(inbox_titles(supervisors["上海"])) == 1


def test_publishing_the_same_key_twice_notifies_once(org, admin, supervisors, daytime):
    make_rule(admin, make_template(admin))
    first = breach(org, key="retry-me")
    second = breach(org, key="retry-me", minutes=999)

    deliver_all()

    assert first.pk == second.pk
    assert len(inbox_titles(supervisors["上海"])) == 1


def test_fanning_an_event_out_again_adds_no_delivery(org, admin, supervisors, daytime):
    make_rule(admin, make_template(admin))
    event = breach(org)
    events_fan_out()
    # As if the fan-out had run again after a crash before it marked the event done.
    Event.objects.filter(pk=event.pk).update(status="new")
    events_fan_out()
    deliver_all()

    assert Delivery.objects.filter(event=event).count() == 1
    assert len(inbox_titles(supervisors["上海"])) == 1


def test_a_worker_that_dies_after_claiming_leaves_the_delivery_to_the_next_once(
    org, admin, supervisors, recorder
):
    make_rule(admin, make_template(admin), channels={"urgent": ["inapp", "recorder"]})
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        breach(org, severity="urgent")
        events_fan_out()
        claimed = runner.claim(10)  # ... and the worker dies here, before sending anything
    assert {d.status for d in claimed} == {DeliveryStatus.SENDING}

    # Within the lease nobody else takes them; after it, the next worker sends each once.
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10, 1)):
        assert runner.deliver_due() == 0
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10, 5)):
        deliver_all()
        deliver_all()

    assert len(inbox_titles(supervisors["上海"])) == 1
    assert len(recorder.sent) == 1
    assert set(Delivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.SENT, 2)}


def test_a_resend_after_a_crash_between_send_and_record_carries_the_same_delivery_id(
    org, admin, supervisors, recorder
):
    make_rule(admin, make_template(admin), channels={"urgent": ["recorder"]})
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        breach(org, severity="urgent")
        events_fan_out()
        (claimed,) = runner.claim(10)
        # The provider accepted the message, then the worker died before recording it.
        recorder().send(runner.message_for(claimed), None)
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10, 5)):
        deliver_all()

    # The at-least-once window: two sends, one delivery id for the receiver to dedupe on.
    assert len(recorder.sent) == 2
    assert len({m.delivery_uid for m in recorder.sent}) == 1
    assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_a_late_worker_cannot_overwrite_the_result_of_the_one_that_took_over(
    org, admin, supervisors, recorder
):
    make_rule(admin, make_template(admin), channels={"urgent": ["recorder"]})
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        breach(org, severity="urgent")
        events_fan_out()
        (slow,) = runner.claim(10)
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10, 5)):
        deliver_all()  # the lease ran out; this worker sends and records
        assert runner.deliver(slow) == DeliveryStatus.SENDING  # the first one wakes up: not its

    # It neither sent a second time nor touched the other worker's record.
    assert len(recorder.sent) == 1
    assert (Delivery.objects.get().status, Delivery.objects.get().attempts) == (
        DeliveryStatus.SENT,
        2,
    )


def test_failures_back_off_then_go_to_the_dead_letters_and_can_be_retried_by_hand(
    org, admin, supervisors, recorder, client_as
):
    make_rule(admin, make_template(admin), channels={"urgent": ["recorder"]})
    recorder.fail_with = DeliveryError("网关繁忙")
    start = at_shanghai(10)
    with mock.patch("django.utils.timezone.now", return_value=start):
        breach(org, severity="urgent")
        deliver_all()
    row = Delivery.objects.get()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.not_before == start + timedelta(seconds=30)

    waits = []
    for _ in range(4):
        before = Delivery.objects.get()
        with mock.patch("django.utils.timezone.now", return_value=before.not_before):
            deliver_all()
        after = Delivery.objects.get()
        if after.status == DeliveryStatus.PENDING:
            waits.append((after.not_before - before.not_before).total_seconds())
    assert waits == [60, 120, 240]
    row = Delivery.objects.get()
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.DEAD, 5, "网关繁忙")

    client = client_as(admin)
    dead = client.get("/api/notify/deliveries", {"status": "dead"}).json()
    assert [d["id"] for d in dead["items"]] == [row.pk]
    stats = client.get("/api/notify/deliveries/stats").json()
    assert stats == [{"channel": "recorder", "status": "dead", "count": 1}]

    recorder.fail_with = None
    assert client.post(f"/api/notify/deliveries/{row.pk}/retry").status_code == 200
    deliver_all()
    assert Delivery.objects.get().status == DeliveryStatus.SENT
    assert len(recorder.sent) == 1
    # Only a dead letter can be retried.
    assert client.post(f"/api/notify/deliveries/{row.pk}/retry").json()["code"] == "not_dead"


def test_backoff_doubles_from_thirty_seconds_up_to_an_hour():
    assert [runner.backoff(n).total_seconds() for n in (1, 2, 3, 4, 8, 20)] == [
        30,
        60,
        120,
        240,
        3600,
        3600,
    ]


def test_a_refused_message_goes_to_the_dead_letters_at_once(
    org, admin, supervisors, recorder, daytime
):
    make_rule(admin, make_template(admin), channels={"urgent": ["recorder"]})
    recorder.fail_with = DeliveryError("号码无效", retryable=False)
    breach(org, severity="urgent")

    deliver_all()

    row = Delivery.objects.get()
    assert (row.status, row.attempts) == (DeliveryStatus.DEAD, 1)


# --- quiet hours --------------------------------------------------------------------------------


def test_a_night_message_waits_until_eight_and_an_urgent_one_goes_at_once(
    org, admin, supervisors, recorder
):
    make_rule(
        admin, make_template(admin), channels={"warning": ["recorder"], "urgent": ["recorder"]}
    )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(23, 30)):
        breach(org, key="night", severity="warning")
        breach(org, key="fire", severity="urgent")
        deliver_all()
    assert [m.severity for m in recorder.sent] == ["urgent"]
    held = Delivery.objects.get(event__key="night")
    assert held.held_for_quiet
    assert held.not_before == at_shanghai(8, day=25)

    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(7, 59, day=25)):
        deliver_all()
    assert len(recorder.sent) == 1
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(8, 0, day=25)):
        deliver_all()
    assert [m.severity for m in recorder.sent] == ["urgent", "warning"]


def test_a_tenant_can_turn_quiet_hours_off_and_a_person_can_keep_their_own(
    org, admin, supervisors, recorder
):
    make_rule(admin, make_template(admin), channels={"warning": ["recorder"]})
    config.settings_save(
        actor=actor_for(admin), quiet_start=time(22), quiet_end=time(8), quiet_enabled=False
    )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(23, 30)):
        breach(org, key="a")
        deliver_all()
    assert len(recorder.sent) == 1

    # 陈静 works late shifts: her own quiet hours are 02:00–10:00.
    config.preference_save(
        actor=actor_for(supervisors["上海"]),
        muted_channels=[],
        quiet_start=time(2),
        quiet_end=time(10),
        addresses={},
    )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(3)):
        breach(org, key="b")
        deliver_all()
    assert Delivery.objects.get(event__key="b").not_before == at_shanghai(10)


@given(
    minute_of_week=st.integers(min_value=0, max_value=7 * 24 * 60 - 1),
    start=st.times(),
    end=st.times(),
)
def test_quiet_release_is_the_next_end_of_the_window_the_moment_falls_in(
    minute_of_week, start, end
):
    start, end = start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
    moment = at_shanghai(0, day=23) + timedelta(minutes=minute_of_week)
    release = quiet_release(moment, start, end, SHANGHAI)
    local = moment.astimezone(SHANGHAI).time()
    if start == end:
        inside = False
    elif start < end:
        inside = start <= local < end
    else:
        inside = local >= start or local < end
    if not inside:
        assert release is None
    else:
        assert release is not None
        assert moment < release <= moment + timedelta(days=1)
        assert release.astimezone(SHANGHAI).time() == end
        # It is the *next* end: a minute before it we are still inside, waiting for it.
        just_before = release - timedelta(minutes=1)
        if just_before > moment:
            assert quiet_release(just_before, start, end, SHANGHAI) == release


# --- recipients ---------------------------------------------------------------------------------


def test_whoever_is_on_duty_gets_it_and_the_fallback_covers_a_gap(org, admin, supervisors, daytime):
    night, day = (
        EmployeeFactory(tenant=org.tenant, name="夜班 李娜"),
        EmployeeFactory(tenant=org.tenant, name="白班 赵强"),
    )
    actor = actor_for(admin)
    roster = config.roster_save(actor=actor, name="调度值班", fallback_id=supervisors["上海"].pk)
    config.shifts_add(
        actor=actor,
        roster_id=roster.pk,
        shifts=[
            (day.pk, at_shanghai(8), at_shanghai(20)),
            (night.pk, at_shanghai(20), at_shanghai(8, day=25)),
        ],
    )
    make_rule(admin, make_template(admin), recipients=[{"kind": "duty", "roster_id": roster.pk}])

    breach(org, key="morning")  # 10:00: 赵强's shift
    deliver_all()
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(9, day=25)):
        breach(org, key="next-day", severity="urgent")  # nobody's shift: the fallback
        deliver_all()

    assert len(inbox_titles(day)) == 1
    assert inbox_titles(night) == []
    assert len(inbox_titles(supervisors["上海"])) == 1
    assert config.on_duty(roster, at_shanghai(21)) == [night.pk]


def test_overlapping_shifts_of_one_person_are_refused(org, admin):
    person = EmployeeFactory(tenant=org.tenant)
    actor = actor_for(admin)
    roster = config.roster_save(actor=actor, name="值班")
    config.shifts_add(
        actor=actor, roster_id=roster.pk, shifts=[(person.pk, at_shanghai(8), at_shanghai(20))]
    )
    with pytest.raises(Invalid) as caught:
        config.shifts_add(
            actor=actor, roster_id=roster.pk, shifts=[(person.pk, at_shanghai(19), at_shanghai(23))]
        )
    assert caught.value.code == "shift_overlap"


def test_the_customer_and_a_field_of_the_event_can_be_recipients(
    org, admin, supervisors, recorder, daytime
):
    owner = EmployeeFactory(tenant=org.tenant, name="刘洋", phone="13700000009")
    make_rule(
        admin,
        make_template(admin),
        recipients=[{"kind": "customer"}, {"kind": "field", "field": "ticket.owner_id"}],
        channels={"warning": ["inapp", "recorder"]},
    )
    breach(org, ticket={"number": "GD1", "owner_id": owner.pk})

    deliver_all()

    assert sorted(m.address for m in recorder.sent) == ["13700000009", "13912345678"]
    # A customer has no inbox here; the owner does.
    assert Notification.objects.count() == 1
    assert inbox_titles(owner) == ["客诉 GD1 待处理"]


def test_a_muted_channel_is_skipped_with_the_reason_unless_the_message_is_urgent(
    org, admin, supervisors, recorder, daytime
):
    make_rule(
        admin, make_template(admin), channels={"warning": ["recorder"], "urgent": ["recorder"]}
    )
    config.preference_save(
        actor=actor_for(supervisors["上海"]),
        muted_channels=["recorder"],
        quiet_start=None,
        quiet_end=None,
        addresses={},
    )
    breach(org, key="w", severity="warning")
    breach(org, key="u", severity="urgent")
    deliver_all()

    skipped = Delivery.objects.get(event__key="w")
    assert (skipped.status, skipped.last_error) == (DeliveryStatus.SKIPPED, "接收人已屏蔽该渠道")
    assert [m.severity for m in recorder.sent] == ["urgent"]


def test_a_channel_without_configuration_is_logged_as_skipped(
    org, admin, supervisors, recorder, daytime
):
    from jingwei.notify.models import ChannelConfig

    ChannelConfig.objects.filter(channel="recorder").update(enabled=False)
    make_rule(admin, make_template(admin), channels={"warning": ["recorder"]})
    breach(org)
    deliver_all()

    row = Delivery.objects.get()
    assert (row.status, row.last_error) == (DeliveryStatus.SKIPPED, "渠道未配置或已停用")
    assert recorder.sent == []


# --- rules are checked when saved -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"condition": "minutes >>= 3"}, "condition"),
        ({"channels": {"urgent": ["pigeon"]}}, "channels.urgent"),
        ({"channels": {"critical": ["inapp"]}}, "channels.critical"),
        ({"recipients": [{"kind": "everyone"}]}, "recipients[0].kind"),
        ({"recipients": [{"kind": "duty", "roster_id": 999999}]}, "recipients[0].roster_id"),
        ({"recipients": []}, "recipients"),
        ({"template_id": 999999}, "template_id"),
        ({"event": ""}, "event"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(org, admin, change, field):
    template = make_template(admin)
    with pytest.raises(Invalid) as caught:
        make_rule(admin, template, **change)
    assert caught.value.field == field


def test_a_template_that_reaches_for_files_or_the_context_is_refused(org, admin):
    for source in ('{% include "/etc/passwd" %}', "{% debug %}", "{% load static %}"):
        with pytest.raises(Invalid) as caught:
            make_template(admin, text=source)
        assert caught.value.field == "text"


def test_a_rule_whose_condition_fails_on_an_event_is_skipped_and_recorded(
    org, admin, supervisors, daytime
):
    make_rule(admin, make_template(admin), condition="ticket.missing.deeper > 1")
    event = breach(org)
    deliver_all()

    assert inbox_titles(supervisors["上海"]) == []
    event.refresh_from_db()
    assert event.status == "done"
    assert event.payload["_rule_errors"][0]["error"]


def test_the_timer_loop_delivers(org):
    assert timers._pollers["notify.deliveries"] is runner.deliver_due


def test_only_notify_managers_change_rules(org, admin, shanghai_agent):
    template = make_template(admin)
    from jingwei.core.errors import Forbidden

    with pytest.raises(Forbidden):
        make_rule(shanghai_agent, template)
    with pytest.raises(Forbidden):
        rules.template_save(
            actor=actor_for(shanghai_agent), data={"key": "x", "name": "x", "title": "x"}
        )


def test_quiet_settings_default_to_ten_at_night_until_eight(org):
    row = config.tenant_settings(org.tenant.pk)
    assert (row.quiet_start, row.quiet_end, row.quiet_enabled) == (time(22), time(8), True)
    assert not NotifySettings.objects.exists()
    assert timezone.now()  # the default needs no row
