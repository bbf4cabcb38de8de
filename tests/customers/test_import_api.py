"""The customer import endpoints: upload (202, or 422 with the reader's code and nothing stored),
the job list and detail, the CSV error report and the Excel template; who may see which job
(own jobs; a manager's region; never another tenant's: 404 like a missing id); PII masked in the
report; Idempotency-Key on the multipart upload."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import openpyxl
import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from jingwei.customers.importing import FIELDS, map_columns, read_table
from jingwei.customers.models import Customer, ImportJob

from ..factories import EmployeeFactory, grant
from .test_import_jobs import csv_file, imported, upload, xlsx_file

pytestmark = pytest.mark.django_db

ONE_ROW = [["王建国", "13817450021", "", "", "", "", "", ""]]
BAD_PHONE = [["黄丽", "1392607", "", "", "", "", "", ""]]


def stored() -> tuple[int, int]:
    return ImportJob.objects.count(), DBTaskResult.objects.count()


def csv_rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


@pytest.fixture
def agent(shanghai_agent: Any) -> Any:
    """王芳, 上海 agent: imports her own customers; may not see full phone numbers."""
    grant(shanghai_agent, ["customer.import", "customer.edit"], "self")
    return shanghai_agent


@pytest.fixture
def south_agent(org: Any) -> Any:
    e = EmployeeFactory(
        tenant=org.tenant, name="陈静", department=org.south_dept, region=org.guangzhou
    )
    grant(e, ["customer.view", "customer.import", "customer.edit"], "self")
    return e


@pytest.fixture
def east_reader(east_manager: Any) -> Any:
    """张伟, 华东 manager: customer.manage over 华东, so he follows his region's imports."""
    grant(east_manager, ["customer.manage"], "region")
    return east_manager


# --- upload -----------------------------------------------------------------------------------


def test_upload_answers_202_with_the_pending_job_and_queues_exactly_one_task(admin, client_as):
    r = upload(client_as(admin), xlsx_file(ONE_ROW), "华东客户.xlsx")

    assert r.status_code == 202, r.content
    body = r.json()
    assert body | {"id": 0, "created_at": ""} == {
        "id": 0,
        "file_name": "华东客户.xlsx",
        "status": "pending",
        "status_label": "排队中",
        "percent": 0,
        "skip_invalid": False,
        "total_rows": 1,
        "processed_rows": 0,
        "created_count": 0,
        "updated_count": 0,
        "skipped_count": 0,
        "message": "",
        "created_by_id": admin.pk,
        "created_at": "",
        "started_at": None,
        "finished_at": None,
    }
    task = DBTaskResult.objects.get()
    assert (task.task_path, task.args_kwargs) == (
        "jingwei.customers.tasks.import_run",
        {"args": [body["id"]], "kwargs": {}},
    )
    assert Customer.objects.count() == 0  # nothing is written until the worker runs it


def test_unknown_columns_are_named_on_the_job(admin, client_as):
    content = xlsx_file(
        [["王建国", "13817450021", "wjg_1975"]], header=["姓名", "手机号", "微信号"]
    )

    r = upload(client_as(admin), content)

    assert r.json()["message"] == "未识别的列（不导入）：微信号"


@pytest.mark.parametrize(
    "content,name,form,code,field",
    [
        (b"", "客户.xlsx", {}, "empty_file", "file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "客户.xls", {}, "legacy_excel", "file"),
        (b"PK\x03\x04garbage", "客户.xlsx", {}, "corrupt_file", "file"),
        ("姓名,地址\n王建国,上海\n".encode(), "客户.csv", {}, "missing_columns", "file"),
        ("姓名,手机号\n".encode(), "客户.csv", {}, "no_rows", "file"),
        (
            "姓名,电话\n王建国,13817450021\n".encode(),
            "客户.csv",
            {"mapping": '{"联系电话": "phone"}'},
            "invalid_mapping",
            "mapping",
        ),
        (
            "姓名,电话\n王建国,13817450021\n".encode(),
            "客户.csv",
            {"mapping": '{"电话": "微信号"}'},
            "invalid_mapping",
            "mapping",
        ),
        (
            "姓名,电话\n王建国,13817450021\n".encode(),
            "客户.csv",
            {"mapping": "[1]"},
            "invalid",
            "mapping",
        ),
        ("姓名,电话\n王建国,13817450021\n".encode(), "客户.pdf", {}, "unsupported_format", "file"),
    ],
    ids=[
        "empty",
        "xls",
        "corrupt-xlsx",
        "no-identity-column",
        "header-only",
        "mapping-names-a-missing-column",
        "mapping-names-an-unknown-field",
        "mapping-not-an-object",
        "pdf",
    ],
)
def test_a_file_that_cannot_be_imported_is_422_and_nothing_is_stored(
    admin, client_as, content, name, form, code, field
):
    client = client_as(admin)
    data = {"file": _file(content, name), **form}

    r = client.post("/api/customers/imports", data)

    assert r.status_code == 422, r.content
    assert (r.json()["code"], r.json()["field"]) == (code, field)
    assert re.search(r"[\u4e00-\u9fff]", r.json()["message"])
    assert stored() == (0, 0)


def _file(content: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(content)
    stream.name = name
    return stream


def test_an_upload_without_a_file_is_422_naming_the_file_field(admin, client_as):
    r = client_as(admin).post("/api/customers/imports", {"skip_invalid": "true"})

    assert r.status_code == 422
    assert r.json()["field"] == "file"
    assert stored() == (0, 0)


def test_uploading_needs_the_import_permission(shanghai_agent, client_as):
    grant(shanghai_agent, ["customer.edit"], "self")

    r = upload(client_as(shanghai_agent), xlsx_file(ONE_ROW))

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    assert "导入客户" in r.json()["message"]
    assert stored() == (0, 0)


def test_an_anonymous_upload_is_401_and_stores_nothing(org, client):
    r = upload(client, xlsx_file(ONE_ROW))

    assert r.status_code == 401
    assert stored() == (0, 0)


def test_an_integration_retrying_an_upload_with_the_same_key_gets_the_same_job(admin, client_as):
    session = client_as(admin)
    issued = session.post("/api/auth/tokens", {"name": "CRM 同步"}, content_type="application/json")
    bearer = Client(headers={"Authorization": f"Bearer {issued.json()['token']}"})
    content = xlsx_file(ONE_ROW)

    first = upload(bearer, content, headers={"Idempotency-Key": "import-2024-06-01"})
    again = upload(bearer, content, headers={"Idempotency-Key": "import-2024-06-01"})

    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert stored() == (1, 1)


def test_the_console_retrying_an_upload_with_the_same_key_gets_the_same_job(admin):
    console = Client(enforce_csrf_checks=True)
    console.force_login(admin.user)
    console.get("/api/auth/csrf")
    headers = {"X-CSRFToken": console.cookies["csrftoken"].value, "Idempotency-Key": "k-1"}
    content = xlsx_file(ONE_ROW)

    first = upload(console, content, headers=headers)
    again = upload(console, content, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    # A different file under the same key is another request, refused.
    other = upload(console, xlsx_file([["李娜", "13900001111"]]), headers=headers)
    assert (other.status_code, other.json()["code"]) == (400, "idempotency_key_reused")


# --- reading jobs -----------------------------------------------------------------------------


def test_the_job_shows_status_percent_counts_and_the_first_errors(admin, client_as):
    client = client_as(admin)
    job = imported(client, xlsx_file([*ONE_ROW, *BAD_PHONE]))

    r = client.get(f"/api/customers/imports/{job.pk}")

    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["status"], body["status_label"], body["percent"]) == ("failed", "失败", 100)
    assert (body["total_rows"], body["created_count"], body["error_count"]) == (2, 0, 1)
    assert body["errors"] == [
        {
            "row": 3,
            "column": "手机号",
            "value": "1392607",
            "reason": "手机号应为 11 位数字，这里是 7 位",
        }
    ]
    assert body["mapping"] == {}


def test_percent_follows_the_phases(admin, client_as):
    client = client_as(admin)
    rows = [[f"客户{i}", f"1380000{i:04d}"] for i in range(10)]
    job_id = upload(client, xlsx_file(rows, header=["姓名", "手机号"])).json()["id"]

    def percent(**state: Any) -> int:
        ImportJob.objects.filter(pk=job_id).update(**state)
        return client.get(f"/api/customers/imports/{job_id}").json()["percent"]

    assert percent() == 0
    assert percent(status="validating", processed_rows=5) == 10
    assert percent(status="writing", processed_rows=0) == 20
    assert percent(status="writing", processed_rows=5) == 60
    assert percent(status="done", processed_rows=10) == 100


def test_each_reader_lists_the_jobs_they_may_see(
    admin, agent, south_agent, east_reader, client_as, other_admin
):
    mine = imported(client_as(agent), xlsx_file(ONE_ROW))
    south = imported(
        client_as(south_agent), xlsx_file([["黄丽", "13926075512"]], header=["姓名", "手机号"])
    )
    hq = imported(
        client_as(admin), xlsx_file([["李秀英", "13916620318"]], header=["姓名", "手机号"])
    )
    imported(client_as(other_admin), xlsx_file(ONE_ROW))  # another tenant's

    def listed(employee: Any) -> set[int]:
        r = client_as(employee).get("/api/customers/imports")
        assert r.status_code == 200, r.content
        return {item["id"] for item in r.json()["items"]}

    assert listed(agent) == {mine.pk}
    assert listed(south_agent) == {south.pk}
    assert listed(east_reader) == {mine.pk}  # 王芳 works in 上海, within 华东
    assert listed(admin) == {mine.pk, south.pk, hq.pk}


def test_reading_jobs_needs_import_or_manage(org, client_as):
    viewer = EmployeeFactory(tenant=org.tenant, name="只读", department=org.hq)
    grant(viewer, ["customer.view"], "tenant")

    r = client_as(viewer).get("/api/customers/imports")

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


@pytest.mark.parametrize("suffix", ["", "/errors.csv"])
def test_a_job_out_of_scope_or_of_another_tenant_answers_404_like_a_missing_one(
    admin, agent, south_agent, east_reader, other_admin, client_as, suffix
):
    hq_job = imported(client_as(admin), xlsx_file(BAD_PHONE))
    south_job = imported(client_as(south_agent), xlsx_file(BAD_PHONE))
    missing = client_as(agent).get(f"/api/customers/imports/987654321{suffix}")
    assert missing.status_code == 404

    for reader, job in [
        (agent, hq_job),  # another employee's job
        (east_reader, south_job),  # a job from outside the manager's region
        (other_admin, hq_job),  # another tenant's job
    ]:
        r = client_as(reader).get(f"/api/customers/imports/{job.pk}{suffix}")
        assert (r.status_code, r.json()) == (404, missing.json()), (reader.name, r.content)

    # and the uploader and their manager do see it
    assert (
        client_as(south_agent).get(f"/api/customers/imports/{south_job.pk}{suffix}").status_code
        == 200
    )
    assert client_as(admin).get(f"/api/customers/imports/{south_job.pk}{suffix}").status_code == 200


# --- the error report -------------------------------------------------------------------------


def test_the_error_report_lists_every_error_and_masks_phones_for_readers_without_pii(
    admin, agent, client_as
):
    content = csv_file(
        [
            ["", "13817450021", "", "", "", "", "", ""],
            ["黄丽", "1392607", "huangli@163", "", "", "", "", ""],
            ["林峰", "13926075512", "", "", "", '=HYPERLINK("x")', "", ""],
        ]
    )
    job = imported(client_as(agent), content, "客户.csv")

    own = csv_rows(client_as(agent).get(f"/api/customers/imports/{job.pk}/errors.csv"))
    full = csv_rows(client_as(admin).get(f"/api/customers/imports/{job.pk}/errors.csv"))

    assert own == [
        ["行号", "列", "值", "原因"],
        ["2", "姓名", "", "姓名不能为空"],
        ["3", "手机号", "1****07", "手机号应为 11 位数字，这里是 7 位"],
        ["3", "邮箱", "h***@163", "邮箱格式不正确"],
        ["4", "等级", '\'=HYPERLINK("x")', full[4][3]],  # a formula stays text in Excel
    ]
    assert [row[2] for row in full[1:4]] == ["", "1392607", "huangli@163"]
    detail = client_as(agent).get(f"/api/customers/imports/{job.pk}").json()
    assert [e["value"] for e in detail["errors"]][:3] == ["", "1****07", "h***@163"]


# --- the template -----------------------------------------------------------------------------


def test_the_template_has_every_accepted_header_and_an_example_row_that_imports(
    org, admin, client_as
):
    client = client_as(admin)
    r = client.get("/api/customers/imports/template.xlsx")

    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/vnd.openxmlformats")
    assert (
        "客户导入模板.xlsx" in r["Content-Disposition"] or "%E5%AE%A2" in r["Content-Disposition"]
    )
    table = read_table(r.content, "模板.xlsx")
    assert list(table.headers) == list(FIELDS.values())
    assert set(map_columns(table).fields) == set(FIELDS)
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["客户", "填写说明"]
    assert book["客户"]["C2"].value == "13800001234" and book["客户"]["C2"].number_format == "@"
    assert book["客户"]["H2"].value == admin.employee_no

    job = imported(client, r.content, "模板.xlsx")

    assert (job.status, job.created_count) == ("done", 1), job.errors
    assert Customer.objects.get().name == "王建国"


def test_the_template_needs_the_import_permission(shanghai_agent, client_as):
    r = client_as(shanghai_agent).get("/api/customers/imports/template.xlsx")

    assert r.status_code == 403


def test_a_file_larger_than_a_json_body_may_still_be_uploaded(admin, client_as):
    rows = "".join(f"客户{n},1380{n:07d}\n" for n in range(60_000))  # about 1.5 MiB
    content = ("姓名,手机号\n" + rows).encode()
    assert len(content) > 1024 * 1024

    r = upload(client_as(admin), content, "名单.csv")

    assert r.status_code == 202, r.content
    assert stored() == (1, 1)
