"""The audit log records who, what, when, before and after; readers see it within their scope;
bulk exports past the threshold freeze the account and alert security."""

from __future__ import annotations

import pytest
from django.test import Client

from jingwei.audit.models import AuditEvent, ExportRecord
from jingwei.notify.models import Notification
from jingwei.org.models import Employee

from ..factories import EmployeeFactory, grant

pytestmark = pytest.mark.django_db


def test_an_api_write_records_who_what_before_and_after(admin, shanghai_agent, client_as):
    r = client_as(admin).patch(
        f"/api/org/employees/{shanghai_agent.pk}",
        {"title": "客服组长"},
        content_type="application/json",
    )

    assert r.status_code == 200
    event = AuditEvent.objects.get(action="org.employee.updated", subject_id=str(shanghai_agent.pk))
    assert event.actor_id == admin.pk
    assert event.actor_name == "周志远"
    assert event.before["title"] == ""
    assert event.after["title"] == "客服组长"
    assert event.subject_type == "org.employee"


def test_a_refused_write_records_nothing(shanghai_agent, client_as):
    before = AuditEvent.objects.count()

    r = client_as(shanghai_agent).post(
        "/api/org/departments", {"name": "越权"}, content_type="application/json"
    )

    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
    assert AuditEvent.objects.count() == before


def test_regional_reader_sees_only_events_by_actors_in_their_region(
    org, admin, east_manager, shanghai_agent, south_engineer, client_as
):
    grant(south_engineer, ["org.manage", "org.view"], "self")
    client_as(shanghai_agent).post(
        "/api/auth/tokens", {"name": "华东的令牌"}, content_type="application/json"
    )
    client_as(south_engineer).post(
        "/api/auth/tokens", {"name": "华南的令牌"}, content_type="application/json"
    )

    r = client_as(east_manager).get("/api/audit/events", {"action": "auth.token"})

    assert r.status_code == 200
    labels = {row["subject_label"] for row in r.json()["items"]}
    assert any("华东的令牌" in label for label in labels)
    assert not any("华南的令牌" in label for label in labels)
    south_event = AuditEvent.objects.get(subject_label__contains="华南的令牌")
    assert client_as(east_manager).get(f"/api/audit/events/{south_event.pk}").status_code == 404
    assert client_as(admin).get(f"/api/audit/events/{south_event.pk}").status_code == 200


def test_reading_the_audit_log_needs_the_permission(shanghai_agent, client_as):
    r = client_as(shanghai_agent).get("/api/audit/events")

    assert r.status_code == 403


@pytest.fixture
def exporter(org):
    e = EmployeeFactory(tenant=org.tenant, name="李导出", department=org.hq)
    grant(e, ["org.view", "org.export"], "tenant")
    return e


@pytest.fixture
def security_officer(org):
    e = EmployeeFactory(tenant=org.tenant, name="安全员", department=org.hq)
    grant(e, ["security.alert"], "tenant")
    return e


def test_exports_under_the_threshold_are_counted_and_served(exporter, settings, client_as):
    settings.EXPORT_GUARD_MAX_ROWS = 1000

    r = client_as(exporter).post("/api/org/employees/export")

    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    record = ExportRecord.objects.get(employee=exporter)
    assert record.rows == Employee.objects.filter(tenant=exporter.tenant).count()


def test_bulk_export_past_the_threshold_freezes_the_account_and_alerts_security(
    org, admin, exporter, security_officer, settings, client_as
):
    settings.EXPORT_GUARD_MAX_ROWS = 5
    EmployeeFactory.create_batch(4, tenant=org.tenant, department=org.hq)
    client = client_as(exporter)

    r = client.post("/api/org/employees/export")

    assert r.status_code == 403
    assert r.json()["code"] == "export_frozen"
    exporter.refresh_from_db()
    assert exporter.frozen_at is not None
    # No login, no API: the very next call is refused.
    assert client.get("/api/auth/me").status_code in (401, 403)
    again = Client().post(
        "/api/auth/login",
        {"username": exporter.user.username, "password": "Secret-pass-123"},
        content_type="application/json",
    )
    assert again.json()["code"] == "account_frozen"
    # Security hears about it; people without security.alert do not.
    alerts = Notification.objects.filter(kind="security.export_frozen")
    assert set(alerts.values_list("recipient_id", flat=True)) == {admin.pk, security_officer.pk}
    assert "李导出" in alerts.first().title
    # The audit log shows who, what and when.
    frozen = AuditEvent.objects.get(action="security.account_frozen", subject_id=str(exporter.pk))
    assert frozen.after["frozen_at"]
    assert frozen.data["rows_in_window"] > 5


def test_exports_add_up_within_the_window(org, exporter, settings, client_as):
    settings.EXPORT_GUARD_MAX_ROWS = 5
    client = client_as(exporter)
    # 2 employees in the tenant (exporter + nobody else yet): 2 rows per export.
    EmployeeFactory(tenant=org.tenant, department=org.hq)

    results = [client.post("/api/org/employees/export").status_code for _ in range(3)]

    assert results == [200, 200, 403]


def test_security_can_unfreeze_with_a_reason(org, admin, exporter, settings, client_as):
    settings.EXPORT_GUARD_MAX_ROWS = 0
    client_as(exporter).post("/api/org/employees/export")

    r = client_as(admin).post(
        f"/api/org/employees/{exporter.pk}/unfreeze",
        {"reason": "核实为正常工作"},
        content_type="application/json",
    )

    assert r.status_code == 200
    assert r.json()["frozen"] is False
    assert AuditEvent.objects.filter(
        action="security.account_unfrozen", subject_id=str(exporter.pk)
    ).exists()


def test_audit_snapshots_mask_phone_and_id_for_readers_without_pii(
    org, admin, shanghai_agent, client_as
):
    reader = EmployeeFactory(tenant=org.tenant, department=org.hq)
    grant(reader, ["audit.view"], "tenant")
    client_as(admin).patch(
        f"/api/org/employees/{shanghai_agent.pk}",
        {"phone": "13912345678", "id_number": "110101199003071234"},
        content_type="application/json",
    )

    def event_seen_by(employee):
        items = (
            client_as(employee)
            .get("/api/audit/events", {"action": "org.employee.updated"})
            .json()["items"]
        )
        return items[0]

    masked = event_seen_by(reader)
    full = event_seen_by(admin)

    assert masked["after"]["phone"] == "139****5678"
    assert masked["after"]["id_number"] == "110101********1234"
    assert "13912345678" not in str(masked)
    assert full["after"]["phone"] == "13912345678"


def test_audit_readers_see_events_about_subjects_in_their_scope_not_about_others(
    org, south_engineer, shanghai_agent, client_as
):
    from jingwei.org.permissions import PERMISSIONS

    from ..factories import make_department

    # An administrator and a department-scoped reader sit in the same small department
    it = make_department(org.tenant, "信息技术部", org.hq)
    editor = EmployeeFactory(tenant=org.tenant, department=it, name="管理员")
    grant(editor, sorted(PERMISSIONS), "tenant")
    it_reader = EmployeeFactory(tenant=org.tenant, department=it, name="信息部审计")
    grant(it_reader, ["audit.view", "customer.view_pii"], "department")
    east_reader = EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.east)
    grant(east_reader, ["audit.view"], "region")
    for person in (south_engineer, shanghai_agent):
        client_as(editor).patch(
            f"/api/org/employees/{person.pk}",
            {"phone": "13712345678"},
            content_type="application/json",
        )

    def subjects_seen_by(reader):
        items = (
            client_as(reader)
            .get("/api/audit/events", {"action": "org.employee.updated"})
            .json()["items"]
        )
        return {row["subject_id"] for row in items}

    # Sitting beside the editor does not open the edited people's records to the reader
    assert subjects_seen_by(it_reader) == set()
    # The 华东 reader sees the edit of the 上海 agent, not of the 广州 engineer
    assert subjects_seen_by(east_reader) == {str(shanghai_agent.pk)}


def test_an_event_about_a_row_scoped_by_region_only_is_filed_under_that_region(org, admin):
    from jingwei.audit.services import audit_record
    from jingwei.customers.models import CustomerPool
    from jingwei.org.scope import actor_for

    pool = CustomerPool.objects.create(tenant=org.tenant, region=org.shanghai, name="上海公海")
    event = audit_record(
        actor=actor_for(admin), tenant_id=org.tenant.pk, action="test.pool", subject=pool
    )

    # Before: the pool itself was taken for its department (a dangling id on PostgreSQL).
    assert (event.department_id, event.region_id) == (None, org.shanghai.pk)
