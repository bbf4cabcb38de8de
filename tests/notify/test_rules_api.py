"""The notification set-up through the API as an administrator uses it, and what another tenant
or a person without notify.manage can (not) see."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from jingwei.notify import delivery as runner
from jingwei.notify.models import Delivery, Notification, Rule
from jingwei.notify.services import event_publish

from ..factories import EmployeeFactory
from .engine_helpers import at_shanghai

pytestmark = pytest.mark.django_db

JSON = "application/json"


def post(client: Any, url: str, body: Any) -> Any:
    return client.post(url, body, content_type=JSON)


def put(client: Any, url: str, body: Any) -> Any:
    return client.put(url, body, content_type=JSON)


@pytest.fixture
def set_up(org: Any, admin: Any, client_as: Any) -> dict[str, Any]:
    client = client_as(admin)
    template = post(
        client,
        "/api/notify/templates",
        {
            "key": "new-ticket",
            "name": "新工单",
            "title": "新工单 {{ number }}",
            "text": "{{ title }}",
        },
    )
    assert template.status_code == 201, template.content
    owner = EmployeeFactory(tenant=org.tenant, name="刘洋")
    rule = post(
        client,
        "/api/notify/rules",
        {
            "name": "新工单通知负责人",
            "event": "ticket.created",
            "recipients": [{"kind": "field", "field": "owner_id"}],
            "channels": {"info": ["inapp"]},
            "template_id": template.json()["id"],
        },
    )
    assert rule.status_code == 201, rule.content
    return {"client": client, "template": template.json(), "rule": rule.json(), "owner": owner}


def test_an_administrator_sets_up_a_rule_and_an_event_through_the_api_reaches_the_inbox(
    org, set_up, client_as
):
    client, owner = set_up["client"], set_up["owner"]
    body = {
        "name": "ticket.created",
        "key": "ticket-1-created",
        "payload": {"number": "GD20261125-0001", "title": "冷柜不制冷", "owner_id": owner.pk},
    }
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        first = post(client, "/api/notify/events", body)
        again = post(client, "/api/notify/events", body)
        runner.deliver_due()

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    feed = client_as(owner).get("/api/notify/inbox/feed", {"after_id": 0}).json()
    assert feed["unread"] == 1
    assert [n["title"] for n in feed["items"]] == ["新工单 GD20261125-0001"]
    newest = feed["items"][-1]["id"]
    assert (
        client_as(owner).get("/api/notify/inbox/feed", {"after_id": newest}).json()["items"] == []
    )


def test_the_delivery_log_finds_by_recipient_and_counts_by_channel_and_status(org, set_up):
    client, owner = set_up["client"], set_up["owner"]
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        for n in range(3):
            event_publish(
                tenant_id=org.tenant.pk,
                name="ticket.created",
                key=f"t{n}",
                payload={"number": f"GD{n}", "owner_id": owner.pk},
            )
        runner.deliver_due()

    found = client.get("/api/notify/deliveries", {"q": "刘洋"}).json()
    assert found["count"] == 3
    assert {d["status"] for d in found["items"]} == {"sent"}
    assert client.get("/api/notify/deliveries", {"q": "nobody"}).json()["count"] == 0
    assert client.get("/api/notify/deliveries/stats").json() == [
        {"channel": "inapp", "status": "sent", "count": 3}
    ]


def test_channel_secrets_are_never_shown_and_a_masked_secret_keeps_its_value(org, set_up):
    client = set_up["client"]
    listed = {c["channel"]: c for c in client.get("/api/notify/channels").json()}
    assert {"inapp", "email", "sms", "wecom", "dingtalk", "webhook"} <= set(listed)
    secret_fields = listed["webhook"]["secret_fields"]
    assert secret_fields
    settings = {
        "url": "https://hooks.example.com/jingwei",
        secret_fields[0]: "s3cr3t-value-0123456789",
    }
    saved = put(client, "/api/notify/channels", {"channel": "webhook", "settings": settings})
    assert saved.status_code == 200, saved.content
    assert saved.json()["settings"][secret_fields[0]] == "******"
    assert "s3cr3t-value-0123456789" not in client.get("/api/notify/channels").content.decode()

    # The console sends the mask back when only the URL changes: the stored secret stays.
    settings = {"url": "https://hooks.example.com/v2", secret_fields[0]: "******"}
    assert (
        put(
            client, "/api/notify/channels", {"channel": "webhook", "settings": settings}
        ).status_code
        == 200
    )
    from jingwei.notify.models import ChannelConfig

    stored = ChannelConfig.objects.get(channel="webhook").settings
    assert stored[secret_fields[0]] == "s3cr3t-value-0123456789"
    assert stored["url"] == "https://hooks.example.com/v2"


def test_bad_channel_settings_name_the_field(set_up):
    answer = put(
        set_up["client"],
        "/api/notify/channels",
        {"channel": "webhook", "settings": {"nonsense": 1}},
    )
    assert answer.status_code == 422
    assert answer.json()["field"].startswith("settings.")
    pigeon = put(set_up["client"], "/api/notify/channels", {"channel": "pigeon", "settings": {}})
    assert (pigeon.status_code, pigeon.json()["field"]) == (422, "channel")


def test_a_person_sets_their_own_preferences_but_not_anothers(
    org, set_up, shanghai_agent, client_as
):
    mine = client_as(shanghai_agent)
    answer = put(
        mine,
        "/api/notify/preferences/me",
        {
            "muted_channels": ["sms"],
            "quiet_start": "23:00",
            "quiet_end": "07:00",
            "addresses": {"wecom_userid": "wangfang"},
        },
    )
    assert answer.status_code == 200, answer.content
    assert mine.get("/api/notify/preferences/me").json()["addresses"] == {
        "wecom_userid": "wangfang"
    }
    assert (
        put(mine, "/api/notify/preferences/me", {"muted_channels": ["inapp"]}).json()["field"]
        == "muted_channels"
    )
    other = put(mine, f"/api/notify/preferences/{set_up['owner'].pk}", {"muted_channels": []})
    assert other.status_code == 403


def test_rosters_and_who_is_on_duty_through_the_api(org, set_up):
    client, owner = set_up["client"], set_up["owner"]
    roster = post(client, "/api/notify/rosters", {"name": "华东调度值班", "region_id": org.east.pk})
    assert roster.status_code == 201, roster.content
    rid = roster.json()["id"]
    shifts = post(
        client,
        f"/api/notify/rosters/{rid}/shifts",
        {
            "shifts": [
                {
                    "employee_id": owner.pk,
                    "starts_at": "2026-11-24T08:00:00+08:00",
                    "ends_at": "2026-11-24T20:00:00+08:00",
                }
            ]
        },
    )
    assert shifts.status_code == 201, shifts.content
    duty = client.get(
        f"/api/notify/rosters/{rid}/on-duty", {"at": "2026-11-24T12:00:00+08:00"}
    ).json()
    assert duty["employee_ids"] == [owner.pk]
    nobody = client.get(f"/api/notify/rosters/{rid}/on-duty", {"at": "2026-11-24T21:00:00+08:00"})
    assert nobody.json()["employee_ids"] == []
    bad = post(
        client,
        f"/api/notify/rosters/{rid}/shifts",
        {
            "shifts": [
                {
                    "employee_id": owner.pk,
                    "starts_at": "2026-11-25T08:00:00+08:00",
                    "ends_at": "2026-11-25T07:00:00+08:00",
                }
            ]
        },
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "shifts[0].ends_at")


def test_an_agent_without_notify_manage_reads_no_rules_and_changes_none(
    set_up, shanghai_agent, client_as
):
    agent = client_as(shanghai_agent)
    for url in (
        "/api/notify/rules",
        "/api/notify/templates",
        "/api/notify/channels",
        "/api/notify/rosters",
        "/api/notify/deliveries",
        "/api/notify/deliveries/stats",
        "/api/notify/settings",
    ):
        assert agent.get(url).status_code == 403, url
    assert post(agent, "/api/notify/events", {"name": "x", "key": "k"}).status_code == 403
    rule_id = set_up["rule"]["id"]
    assert agent.delete(f"/api/notify/rules/{rule_id}").status_code == 403
    assert Rule.objects.filter(pk=rule_id).exists()


def test_another_tenants_rules_rosters_and_deliveries_are_invisible(
    org, set_up, other_admin, client_as
):
    client, owner = set_up["client"], set_up["owner"]
    roster = post(client, "/api/notify/rosters", {"name": "值班"}).json()
    webhook = {"url": "https://hooks.example.com/jingwei", "secret": "s" * 20}
    saved = put(client, "/api/notify/channels", {"channel": "webhook", "settings": webhook})
    assert saved.status_code == 200, saved.content
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        event_publish(
            tenant_id=org.tenant.pk,
            name="ticket.created",
            key="mine",
            payload={"owner_id": owner.pk},
        )
        runner.deliver_due()
    delivery = Delivery.objects.get()
    outsider = client_as(other_admin)
    rule_id, template_id = set_up["rule"]["id"], set_up["template"]["id"]

    assert outsider.get("/api/notify/rules").json() == []
    configured = {
        c["channel"]: c["configured"] for c in outsider.get("/api/notify/channels").json()
    }
    assert configured["webhook"] is False
    assert outsider.get("/api/notify/templates").json() == []
    assert outsider.get("/api/notify/rosters").json() == []
    assert outsider.get("/api/notify/deliveries").json()["count"] == 0
    assert outsider.get("/api/notify/deliveries/stats").json() == []
    assert outsider.get(f"/api/notify/rosters/{roster['id']}/on-duty").status_code == 404
    assert outsider.get(f"/api/notify/rosters/{roster['id']}/shifts").status_code == 404
    assert (
        put(
            outsider,
            f"/api/notify/rules/{rule_id}",
            {k: v for k, v in set_up["rule"].items() if k != "id"},
        ).status_code
        == 404
    )
    assert outsider.delete(f"/api/notify/rules/{rule_id}").status_code == 404
    assert outsider.delete(f"/api/notify/templates/{template_id}").status_code == 404
    assert outsider.post(f"/api/notify/deliveries/{delivery.pk}/retry").status_code == 404
    assert put(outsider, f"/api/notify/preferences/{owner.pk}", {}).status_code == 404
    # The same event key in another tenant is another event.
    answer = post(outsider, "/api/notify/events", {"name": "ticket.created", "key": "mine"})
    assert answer.status_code == 201
    assert Notification.objects.filter(tenant=org.tenant).count() == 1


def test_a_template_in_use_cannot_be_deleted(set_up):
    answer = set_up["client"].delete(f"/api/notify/templates/{set_up['template']['id']}")
    assert (answer.status_code, answer.json()["code"]) == (409, "in_use")


def test_the_customers_number_is_masked_in_the_log_and_kept_out_of_colleagues_inboxes(
    org, admin, client_as
):
    from jingwei.notify.services import config as notify_config
    from jingwei.notify.services import rules as notify_rules
    from jingwei.org.scope import actor_for

    from ..factories import grant

    owner = EmployeeFactory(tenant=org.tenant, name="刘洋")
    actor = actor_for(admin)
    notify_config.channel_config_save(
        actor=actor,
        channel="webhook",
        settings={"url": "http://127.0.0.1:9/unused", "secret": "s" * 20},
        enabled=False,
    )
    template = notify_rules.template_save(
        actor=actor, data={"key": "t", "name": "t", "title": "工单 {{ ticket.number }}"}
    )

    for kind, channels in (("customer", ["sms"]), ("field", ["inapp"])):
        spec = {"kind": kind, "field": "ticket.owner_id"} if kind == "field" else {"kind": kind}
        notify_rules.rule_save(
            actor=actor,
            data={
                "name": f"规则-{kind}",
                "event": "ticket.created",
                "recipients": [spec],
                "channels": {"info": channels},
                "template_id": template.pk,
            },
        )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        event_publish(
            tenant_id=org.tenant.pk,
            name="ticket.created",
            key="pii",
            payload={
                "ticket": {"id": 7, "number": "GD7", "owner_id": owner.pk},
                "customer": {"name": "王建国", "phone": "13912345678"},
            },
        )
        runner.deliver_due()

    # The inbox links to the ticket and carries nothing of the customer's.
    note = client_as(owner).get("/api/notify/inbox").json()["items"][0]
    assert note["data"]["ticket"] == {"id": 7, "number": "GD7", "owner_id": owner.pk}
    assert "13912345678" not in str(note) and "王建国" not in str(note)
    # A notification manager without customer.view_pii sees the SMS address masked.
    manager = EmployeeFactory(tenant=org.tenant, name="通知管理员")
    grant(manager, ["notify.manage"], "tenant")
    addresses = {
        d["channel"]: d["address"]
        for d in client_as(manager).get("/api/notify/deliveries").json()["items"]
    }
    assert addresses["sms"] == "139****5678"
    full = client_as(admin).get("/api/notify/deliveries", {"channel": "sms"}).json()["items"]
    assert full[0]["address"] == "13912345678"
