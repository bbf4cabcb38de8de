from __future__ import annotations

import pytest

from jingwei.notify.services import notification_send

pytestmark = pytest.mark.django_db


def test_each_person_sees_only_their_own_inbox(org, admin, shanghai_agent, client_as):
    notification_send(
        tenant_id=org.tenant.pk, recipient_ids=[shanghai_agent.pk], kind="t", title="给王芳"
    )
    notification_send(tenant_id=org.tenant.pk, recipient_ids=[admin.pk], kind="t", title="给管理员")

    titles = [
        n["title"] for n in client_as(shanghai_agent).get("/api/notify/inbox").json()["items"]
    ]

    # Even the tenant-wide admin does not read other people's inboxes.
    assert titles == ["给王芳"]
    assert [n["title"] for n in client_as(admin).get("/api/notify/inbox").json()["items"]] == [
        "给管理员"
    ]


def test_marking_read_lowers_the_unread_count(org, shanghai_agent, client_as):
    first, _ = notification_send(
        tenant_id=org.tenant.pk, recipient_ids=[shanghai_agent.pk], kind="t", title="一"
    ) + notification_send(
        tenant_id=org.tenant.pk, recipient_ids=[shanghai_agent.pk], kind="t", title="二"
    )
    client = client_as(shanghai_agent)
    assert client.get("/api/notify/inbox/unread").json() == {"unread": 2}

    assert client.post(f"/api/notify/inbox/{first.pk}/read").json()["read_at"]
    assert client.get("/api/notify/inbox/unread").json() == {"unread": 1}
    assert client.post("/api/notify/inbox/read-all").json() == {"marked": 1}
    assert client.get("/api/notify/inbox", {"unread": True}).json()["count"] == 0


def test_another_persons_notification_cannot_be_marked(org, admin, shanghai_agent, client_as):
    (theirs,) = notification_send(
        tenant_id=org.tenant.pk, recipient_ids=[admin.pk], kind="t", title="x"
    )

    r = client_as(shanghai_agent).post(f"/api/notify/inbox/{theirs.pk}/read")

    assert r.status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None
