"""Customer exports as people use them: the customer list (same filters) or a segment's members
as CSV for Excel, only customers the exporter may see and export, phones and e-mails masked
without customer.view_pii, and the export guard freezing an account that exports too much."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jingwei.audit.models import AuditEvent, ExportRecord
from jingwei.customers import services
from jingwei.customers.models import Customer, CustomerTag, Tag, TagGroup
from jingwei.customers.services.exporting import COLUMNS
from jingwei.notify.models import Notification
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"
EXPORT = "/api/customers/export"


def rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")  # so that Excel reads the Chinese right
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def names(response: Any) -> set[str]:
    return {row["名称"] for row in rows(response)}


@pytest.fixture
def book(org, admin, shanghai_agent):
    """王建国 of 浦东 (the agent's own; VIP, two phones, an e-mail, tags), 李秀英 of 上海 and
    黄丽 of 广州."""
    grant(shanghai_agent, ["customer.edit"], "self")
    wang = make_customer(
        shanghai_agent,
        "王建国",
        "13817450021",
        "13817450022",
        emails=("wangjianguo@163.com",),
        region_id=org.pudong.pk,
        level="vip",
        company_name="浦东海鸥电器",
    )
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", sort=0)
    interest = TagGroup.objects.create(tenant=org.tenant, name="兴趣", sort=1)
    for tag in (
        Tag.objects.create(tenant=org.tenant, group=interest, name="空调"),
        Tag.objects.create(tenant=org.tenant, group=value, name="高价值"),
    ):
        CustomerTag.objects.create(
            tenant=org.tenant, customer=wang, tag=tag, tagged_at=timezone.now()
        )
    Customer.objects.filter(pk=wang.pk).update(score=60)
    return {
        "pudong": wang,
        "shanghai": make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk),
        "guangzhou": make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk),
    }


@pytest.fixture
def exporter(org):
    """Sees and exports the whole company, but may not see phones in full."""
    e = EmployeeFactory(tenant=org.tenant, name="李导出", department=org.hq)
    grant(e, ["customer.view", "customer.export"], "tenant")
    return e


@pytest.fixture
def security_officer(org):
    e = EmployeeFactory(tenant=org.tenant, name="安全员", department=org.hq)
    grant(e, ["security.alert"], "tenant")
    return e


def test_the_export_lists_each_customer_with_the_columns_people_expect(
    book, admin, shanghai_agent, client_as
):
    exported = rows(client_as(admin).post(EXPORT))

    assert list(exported[0]) == COLUMNS
    wang = next(r for r in exported if r["名称"] == "王建国")
    assert wang == {
        "编号": str(book["pudong"].pk),
        "名称": "王建国",
        "类型": "个人",
        "等级": "VIP",
        "公司名称": "浦东海鸥电器",
        "区域": "浦东",
        "负责人": shanghai_agent.name,
        "手机号": "13817450021、13817450022",
        "邮箱": "wangjianguo@163.com",
        "标签": "高价值、空调",  # in the order of their groups
        "评分": "60",
        "创建时间": timezone.localtime(book["pudong"].created_at).strftime("%Y-%m-%d %H:%M"),
    }
    assert [r["名称"] for r in exported] == ["黄丽", "李秀英", "王建国"]  # newest first


def test_phones_and_emails_are_masked_for_an_exporter_without_view_pii(book, exporter, client_as):
    wang = next(r for r in rows(client_as(exporter).post(EXPORT)) if r["名称"] == "王建国")

    assert wang["手机号"] == "138****0021、138****0022"
    assert wang["邮箱"] == "w***@163.com"


def test_the_export_takes_the_customer_list_filters(book, org, admin, client_as):
    client = client_as(admin)

    assert names(client.post(f"{EXPORT}?region_id={org.shanghai.pk}")) == {"王建国", "李秀英"}
    assert names(client.post(f"{EXPORT}?q=1391662")) == {"李秀英"}
    assert names(client.post(f"{EXPORT}?level=vip")) == {"王建国"}


def test_each_exporter_gets_only_the_customers_of_their_scope(
    book, org, east_manager, shanghai_agent, client_as
):
    grant(east_manager, ["customer.export"], "region")
    grant(shanghai_agent, ["customer.export"], "self")

    assert names(client_as(east_manager).post(EXPORT)) == {"王建国", "李秀英"}
    assert names(client_as(shanghai_agent).post(EXPORT)) == {"王建国"}


def test_an_export_scope_narrower_than_the_view_scope_narrows_the_export(
    book, org, admin, client_as
):
    """Seeing the whole company does not mean exporting it: the export scope decides too."""
    viewer = EmployeeFactory(tenant=org.tenant, name="区域专员", region=org.south)
    grant(viewer, ["customer.view"], "tenant")
    grant(viewer, ["customer.export"], "region")

    assert names(client_as(viewer).post(EXPORT)) == {"黄丽"}


def test_exporting_takes_customer_export(book, east_manager, client_as):
    r = client_as(east_manager).post(EXPORT)

    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
    assert not ExportRecord.objects.exists()


def test_every_export_is_counted_by_the_guard(book, admin, client_as):
    client = client_as(admin)
    client.post(EXPORT)
    segment = services.segment_create(
        actor=actor_for(admin),
        name="VIP",
        conditions_data={"field": "level", "op": "in", "value": ["vip"]},
    )
    client.post(f"/api/customers/segments/{segment.pk}/export")

    records = list(ExportRecord.objects.order_by("at").values_list("kind", "rows"))
    assert records == [("customers", 3), (f"customers.segment:{segment.pk}", 1)]
    assert AuditEvent.objects.filter(action="export.requested").count() == 2


def test_bulk_export_past_the_threshold_freezes_the_account_and_alerts_security(
    book, org, admin, exporter, security_officer, settings, client_as
):
    settings.EXPORT_GUARD_MAX_ROWS = 5
    client = client_as(exporter)
    assert client.post(EXPORT).status_code == 200  # 3 rows
    for i in range(3):
        make_customer(admin, f"新客户{i}", f"1360000000{i}", region_id=org.pudong.pk)

    r = client.post(EXPORT)  # 3 + 6 rows in the window

    assert r.status_code == 403
    assert r.json()["code"] == "export_frozen"
    assert "王建国" not in r.content.decode()
    exporter.refresh_from_db()
    assert exporter.frozen_at is not None
    assert client.post(EXPORT).status_code in (401, 403)  # frozen: nothing more
    alert = Notification.objects.get(kind="security.export_frozen", recipient=security_officer)
    assert "李导出" in alert.title
    assert AuditEvent.objects.filter(
        action="security.account_frozen", subject_id=str(exporter.pk)
    ).exists()


def test_segment_exports_count_towards_the_same_threshold(
    book, admin, exporter, settings, client_as
):
    settings.EXPORT_GUARD_MAX_ROWS = 4
    segment = services.segment_create(
        actor=actor_for(admin),
        name="全部",
        conditions_data={"field": "kind", "op": "eq", "value": "person"},
    )
    client = client_as(exporter)

    first = client.post(f"/api/customers/segments/{segment.pk}/export")
    second = client.post(EXPORT)

    assert first.status_code == 200
    assert second.status_code == 403
    exporter.refresh_from_db()
    assert exporter.frozen_at is not None


def test_a_segment_exports_its_members_with_the_same_columns_as_the_list(
    book, admin, exporter, east_manager, client_as
):
    segment = services.segment_create(
        actor=actor_for(admin),
        name="浦东客户",
        conditions_data={"field": "region", "op": "in", "value": [book["pudong"].region_id]},
    )
    grant(east_manager, ["customer.export"], "region")
    path = f"/api/customers/segments/{segment.pk}/export"

    masked = rows(client_as(exporter).post(path))
    full = rows(client_as(east_manager).post(path))
    listed = next(r for r in rows(client_as(exporter).post(EXPORT)) if r["名称"] == "王建国")

    assert masked == [listed]
    assert full[0]["手机号"] == "13817450021、13817450022"


def test_a_segment_export_takes_customer_export(book, admin, east_manager, client_as):
    segment = services.segment_create(
        actor=actor_for(admin),
        name="VIP",
        conditions_data={"field": "level", "op": "in", "value": ["vip"]},
    )

    r = client_as(east_manager).post(f"/api/customers/segments/{segment.pk}/export")

    assert r.status_code == 403
    assert not ExportRecord.objects.exists()


def test_a_name_that_looks_like_a_formula_is_exported_as_text(org, admin, client_as):
    make_customer(admin, '=HYPERLINK("http://evil.example","点我")', "13800000001")

    [row] = rows(client_as(admin).post(EXPORT))

    assert row["名称"].startswith("'=")


def test_another_companys_customers_are_never_exported(book, other_admin, client_as):
    assert rows(client_as(other_admin).post(EXPORT)) == []


def test_the_export_takes_the_same_queries_for_few_or_many_customers(org, admin, client_as):
    client = client_as(admin)
    make_customer(admin, "第一位", "13800000001", emails=("a@example.cn",))
    client.post(EXPORT)

    with CaptureQueriesContext(connection) as few:
        client.post(EXPORT)
    for i in range(5):
        make_customer(admin, f"客户{i}", f"1370000000{i}", emails=(f"c{i}@example.cn",))
    with CaptureQueriesContext(connection) as many:
        assert len(rows(client.post(EXPORT))) == 6

    assert len(many) == len(few)


def test_a_token_caller_exports_without_csrf_but_a_cross_site_get_does_nothing(
    book, admin, client_as
):
    """Exports are POST: a link or image on another site (a GET) cannot start one."""
    session = client_as(admin)
    issued = session.post("/api/auth/tokens", {"name": "报表"}, content_type=JSON)
    bearer = Client(headers={"Authorization": f"Bearer {issued.json()['token']}"})

    assert bearer.post(EXPORT).status_code == 200
    assert session.get(EXPORT).status_code in (404, 405, 422)
    assert ExportRecord.objects.count() == 1
