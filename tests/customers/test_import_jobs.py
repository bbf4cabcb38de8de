"""Customer import jobs, as the uploader and the background worker see them.

Files are built inside each test (openpyxl for .xlsx; CSV in UTF-8, UTF-8 with BOM and GBK).
Jobs are uploaded through the API and run the way `jingwei worker` runs them: the queued
django-tasks row is claimed and handed to django-tasks-db's own `Worker.run_task` (in-process,
inside the test's transaction; the real worker process is the last, slow test). The immediate
backend is not used: the upload enqueues inside its own durable transaction (the job and its task
commit together), and an immediate backend would run the import inside that transaction.

What is proved here:
- xlsx and CSV files import; rows land with the uploader as owner and the uploader's region by
  default, a named region and an assignable owner when the file says so; tags are applied
  (missing ones created in 导入标签);
- all-or-nothing: one bad row, nothing written, and the report lists row, column, value and
  reason; skip mode writes the good rows and reports the rest;
- rows merge into customers already holding their phone / e-mail (counted as updated, blanks
  filled, owner untouched); a repeated identity within the file is an error naming the first row;
- a crash mid-write leaves nothing; progress is committed in steps a poller can see;
- scope: rows that would land outside the uploader's scope, or join a customer outside it, are
  row errors naming the column;
- 2,000 rows import; a property test over random mixes of good and bad rows.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django_tasks import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.customers.models import (
    Customer,
    CustomerEvent,
    CustomerTag,
    Identity,
    ImportJob,
    Tag,
    TagGroup,
)
from jingwei.customers.services import importing as service
from jingwei.org.models import Employee

from ..factories import EmployeeFactory, grant, make_region
from .factories import make_customer

pytestmark = pytest.mark.django_db

HEADER = ["姓名", "手机号", "邮箱", "区域", "负责人工号", "等级", "标签", "备注"]


# --- helpers (also used by test_import_api.py) -------------------------------------------------


def xlsx_file(rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADER) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "客户"
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_file(
    rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADER, encoding: str = "utf-8"
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else str(v) for v in row] for row in rows])
    return out.getvalue().encode(encoding)


def upload(
    client: Client,
    content: bytes,
    name: str = "客户名单.xlsx",
    *,
    skip_invalid: bool = False,
    mapping: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    form: dict[str, Any] = {
        "file": _named(content, name),
        "skip_invalid": str(skip_invalid).lower(),
    }
    if mapping is not None:
        form["mapping"] = json.dumps(mapping, ensure_ascii=False)
    return client.post("/api/customers/imports", form, **extra)


def _named(content: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(content)
    stream.name = name
    return stream


def run_worker() -> list[DBTaskResult]:
    """Run every queued task as `jingwei worker --batch` does: claim the row under a lock, then
    the worker's own run_task (which marks it SUCCESSFUL or FAILED)."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="pytest",
        excluded_queue_names=[],
    )
    ran = []
    while True:
        with transaction.atomic():
            row = DBTaskResult.objects.ready().get_locked()
            if row is None:
                return ran
            row.claim(worker.worker_id)
        worker.run_task(row)
        ran.append(row)


def imported(client: Client, content: bytes, name: str = "客户名单.xlsx", **kw: Any) -> ImportJob:
    """Upload, run the worker, and return the finished job."""
    r = upload(client, content, name, **kw)
    assert r.status_code == 202, r.content
    run_worker()
    return ImportJob.objects.get(pk=r.json()["id"])


def report(job: ImportJob) -> list[tuple[int, str, str]]:
    return [(e["row"], e["column"], e["reason"]) for e in job.errors]


def phones_of(customer: Customer) -> set[str]:
    return set(customer.identities.filter(kind="phone").values_list("value", flat=True))


def written_rows() -> dict[str, int]:
    """Counts of everything an import may write."""
    return {
        "customers": Customer.objects.count(),
        "identities": Identity.objects.count(),
        "tags": Tag.objects.count(),
        "tag_groups": TagGroup.objects.count(),
        "customer_tags": CustomerTag.objects.count(),
        "events": CustomerEvent.objects.count(),
    }


@pytest.fixture
def importer(admin: Employee, client_as: Any) -> Client:
    """The HQ admin: every permission, whole tenant; works in 上海."""
    return client_as(admin)


@pytest.fixture
def colleague(org: Any) -> Employee:
    return EmployeeFactory(
        tenant=org.tenant,
        name="刘洋",
        employee_no="SH0088",
        department=org.east_dept,
        region=org.shanghai,
    )


# --- files and defaults ---------------------------------------------------------------------


def test_an_xlsx_import_creates_customers_owned_by_the_uploader_in_their_region(
    org, admin, importer
):
    Employee.objects.filter(pk=admin.pk).update(region=org.shanghai)
    content = xlsx_file(
        [
            ["王建国", "13817450021", "wangjianguo@163.com", "", "", "VIP", "高频用户、空调", "老客户"],
            ["李秀英", 13916620318, "", "", "", "", "", ""],
        ]
    )  # fmt: skip

    job = imported(importer, content)

    assert (job.status, job.created_count, job.updated_count, job.skipped_count) == (
        "done", 2, 0, 0
    )  # fmt: skip
    assert job.processed_rows == job.total_rows == 2
    assert job.errors == [] and job.finished_at is not None
    assert bytes(job.content) == b""  # the uploaded file is not kept
    wang = Customer.objects.get(name="王建国")
    assert (wang.owner_id, wang.region_id, wang.department_id) == (
        admin.pk, org.shanghai.pk, org.hq.pk
    )  # fmt: skip
    assert (wang.level, wang.source, wang.remark) == ("vip", "导入", "老客户")
    assert phones_of(wang) == {"13817450021"}
    assert set(wang.identities.values_list("source", flat=True)) == {"import"}
    assert set(wang.tag_links.values_list("tag__name", "tag__group__name", "source")) == {
        ("高频用户", "导入标签", "import"),
        ("空调", "导入标签", "import"),
    }
    assert set(wang.tag_links.values_list("tagged_by_id", flat=True)) == {admin.pk}
    # a phone typed as a number in Excel reads back as the same 11 digits
    assert phones_of(Customer.objects.get(name="李秀英")) == {"13916620318"}
    assert CustomerEvent.objects.filter(customer=wang, channel="import").count() == 1


@pytest.mark.parametrize(
    "encoding,prefix",
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("gbk", b"")],
    ids=["utf-8", "utf-8-bom", "gbk"],
)
def test_csv_in_utf8_with_or_without_bom_and_in_gbk_imports_the_same_chinese_text(
    encoding, prefix, importer
):
    content = prefix + csv_file(
        [["张秀兰", "13761082245", "zhang.xl@qq.com", "", "", "普通", "售后回访", "北京路店"]],
        encoding=encoding,
    )

    job = imported(importer, content, "客户.csv")

    assert job.status == "done", job.message
    customer = Customer.objects.get(name="张秀兰")
    assert customer.remark == "北京路店"
    assert list(customer.tag_links.values_list("tag__name", flat=True)) == ["售后回访"]


def test_a_column_mapping_names_columns_whose_headers_are_not_recognised(importer):
    content = csv_file([["陈志强", "13651234987", "A 栋"]], header=["客户", "移动号码", "地址"])

    job = imported(
        importer, content, "客户.csv", mapping={"客户": "name", "移动号码": "手机号", "地址": None}
    )

    assert job.status == "done", job.message
    assert phones_of(Customer.objects.get(name="陈志强")) == {"13651234987"}


def test_a_named_region_and_an_assignable_owner_are_used(org, importer, colleague):
    content = xlsx_file([["周晓明", "13800138001", "", "浦东", "SH0088", "", "", ""]])

    job = imported(importer, content)

    assert job.status == "done", job.errors
    customer = Customer.objects.get(name="周晓明")
    assert (customer.region_id, customer.owner_id, customer.department_id) == (
        org.pudong.pk, colleague.pk, org.east_dept.pk
    )  # fmt: skip


def test_a_repeated_region_name_needs_its_path(org, importer):
    make_region(org.tenant, "新区", org.shanghai)
    south_new = make_region(org.tenant, "新区", org.guangzhou)
    content = xlsx_file(
        [
            ["赵敏", "13800138002", "", "新区", "", "", "", ""],
            ["钱多多", "13800138003", "", "广州/新区", "", "", "", ""],
            ["孙悟", "13800138004", "", "火星", "", "", "", ""],
        ]
    )

    job = imported(importer, content, skip_invalid=True)

    assert report(job) == [
        (2, "区域", "有多个名为「新区」的区域，请写完整路径：华东/上海/新区、华南/广州/新区"),
        (4, "区域", "区域「火星」不存在"),
    ]
    assert Customer.objects.get(name="钱多多").region_id == south_new.pk


def test_existing_tags_are_reused_and_an_ambiguous_one_must_name_its_group(org, importer):
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", choice="single")
    interest = TagGroup.objects.create(tenant=org.tenant, name="兴趣")
    high = Tag.objects.create(tenant=org.tenant, group=value, name="高")
    Tag.objects.create(tenant=org.tenant, group=interest, name="高")
    aircon = Tag.objects.create(tenant=org.tenant, group=interest, name="空调")
    content = xlsx_file(
        [
            ["吴昊天", "13800138005", "", "", "", "", "客户价值/高，空调", ""],
            ["郑爽", "13800138006", "", "", "", "", "高", ""],
        ]
    )

    job = imported(importer, content, skip_invalid=True)

    assert report(job) == [
        (3, "标签", "标签「高」在多个标签组（客户价值、兴趣）中都有，请写成「标签组/高」")
    ]
    linked = set(Customer.objects.get(name="吴昊天").tag_links.values_list("tag_id", flat=True))
    assert linked == {high.pk, aircon.pk}
    assert not TagGroup.objects.filter(name="导入标签").exists()  # nothing new was needed


# --- all or nothing, and skipping ---------------------------------------------------------------


BAD_ROWS = [
    ["王建国", "13817450021", "", "", "", "", "", ""],
    ["", "13916620318", "", "", "", "", "", ""],  # no name
    ["黄丽", "1392607", "huangli@", "", "", "", "", ""],  # short phone, broken e-mail
    ["林峰", "13926075512", "", "", "", "钻石", "", ""],  # unknown level
]


def test_one_bad_row_fails_the_whole_import_and_writes_nothing(importer):
    before = written_rows()

    job = imported(importer, xlsx_file(BAD_ROWS))

    assert job.status == "failed"
    assert written_rows() == before
    assert (job.created_count, job.updated_count, job.skipped_count) == (0, 0, 0)
    assert report(job) == [
        (3, "姓名", "姓名不能为空"),
        (4, "手机号", "手机号应为 11 位数字，这里是 7 位"),
        (4, "邮箱", "邮箱格式不正确"),
        (5, "等级", "等级「钻石」不在允许的取值中：VIP、普通、潜在、normal、potential"),
    ]
    assert [e["value"] for e in job.errors] == ["", "1392607", "huangli@", "钻石"]
    assert "4 处错误（涉及 3 行）" in job.message and "没有写入任何数据" in job.message
    event = AuditEvent.objects.get(action="customers.import.failed")
    assert (event.data["errors"], event.data["import_job_id"]) == (4, job.pk)


def test_skip_mode_writes_the_good_rows_and_reports_the_bad_ones(importer):
    job = imported(importer, xlsx_file(BAD_ROWS), skip_invalid=True)

    assert job.status == "done"
    assert (job.created_count, job.updated_count, job.skipped_count) == (1, 0, 3)
    assert list(Customer.objects.values_list("name", flat=True)) == ["王建国"]
    assert [row for row, _, _ in report(job)] == [3, 4, 4, 5]
    assert job.message.startswith("新建 1 位客户，合入已有客户 0 行，跳过有错误的 3 行")
    event = AuditEvent.objects.get(action="customers.import.finished")
    assert event.data | {"file_name": ""} == {
        "import_job_id": job.pk,
        "file_name": "",
        "skip_invalid": True,
        "total_rows": 4,
        "created": 1,
        "updated": 0,
        "skipped": 3,
        "errors": 4,
    }


def test_the_import_records_one_import_audit_event_not_one_per_row(importer):
    rows = [[f"客户{i}", f"1380000{i:04d}", "", "", "", "", "", ""] for i in range(30)]

    imported(importer, xlsx_file(rows))

    assert AuditEvent.objects.filter(action__startswith="customers.import.").count() == 1


# --- merging into known customers --------------------------------------------------------------


def test_a_row_with_a_known_phone_joins_that_customer_and_fills_only_its_blanks(
    org, admin, importer, colleague
):
    known = make_customer(admin, "王建国", "13817450021", region_id=org.pudong.pk, level="vip")
    content = xlsx_file(
        [["王建国（新）", "+86 138-1745-0021", "wjg@example.cn", "广州", "SH0088", "普通", "复购", "补充"]]
    )  # fmt: skip

    job = imported(importer, content)

    assert (job.status, job.created_count, job.updated_count) == ("done", 0, 1)
    known.refresh_from_db()
    assert Customer.objects.count() == 1
    # region, owner, name and level were set: kept; the blank remark was filled
    assert (known.name, known.region_id, known.owner_id, known.level, known.remark) == (
        "王建国", org.pudong.pk, admin.pk, "vip", "补充"
    )  # fmt: skip
    assert set(known.identities.values_list("kind", "value")) == {
        ("phone", "13817450021"),
        ("email", "wjg@example.cn"),
    }
    assert list(known.tag_links.values_list("tag__name", flat=True)) == ["复购"]


def test_a_single_choice_tag_replaces_the_other_tag_of_its_group(org, admin, importer):
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", choice="single")
    high, low = (Tag.objects.create(tenant=org.tenant, group=value, name=n) for n in ("高", "低"))
    known = make_customer(admin, "王建国", "13817450021")
    CustomerTag.objects.create(
        tenant=org.tenant, customer=known, tag=low, source="manual", tagged_at=known.created_at
    )

    imported(importer, xlsx_file([["王建国", "13817450021", "", "", "", "", "高", ""]]))

    assert list(known.tag_links.values_list("tag_id", flat=True)) == [high.pk]


def test_the_same_identity_twice_in_one_file_is_an_error_naming_the_first_row(importer):
    content = xlsx_file(
        [
            ["王建国", "13817450021", "wjg@example.cn", "", "", "", "", ""],
            ["王建国", "138 1745 0021", "", "", "", "", "", ""],
            ["王太太", "13817450022", "WJG@example.cn", "", "", "", "", ""],
        ]
    )

    job = imported(importer, content, skip_invalid=True)

    assert report(job) == [
        (3, "手机号", "与第 2 行的手机号重复"),
        (4, "邮箱", "与第 2 行的邮箱重复"),
    ]
    assert Customer.objects.count() == 1


# --- scope ------------------------------------------------------------------------------------


@pytest.fixture
def agent_importer(shanghai_agent, client_as) -> Client:
    grant(shanghai_agent, ["customer.import", "customer.edit"], "self")
    return client_as(shanghai_agent)


@pytest.fixture
def east_importer(east_manager, client_as) -> Client:
    grant(
        east_manager,
        ["customer.import", "customer.edit", "customer.assign", "customer.manage"],
        "region",
    )
    return client_as(east_manager)


def test_an_agent_may_not_assign_owners_nor_join_a_customer_outside_their_scope(
    org, admin, shanghai_agent, agent_importer, colleague
):
    make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)
    content = xlsx_file(
        [
            ["王建国", "13817450021", "", "", "SH0088", "", "", ""],
            ["黄丽", "13926075512", "", "", "", "", "", ""],
            ["李秀英", "13916620318", "", "广州", "", "", "", ""],
        ]
    )

    job = imported(agent_importer, content, skip_invalid=True)

    assert report(job) == [
        (2, "负责人工号", "您无权把客户分配给「刘洋」（SH0088）"),
        (3, "手机号", "该客户已存在，但不在您的数据范围内，请联系其负责人或主管"),
    ]
    # a customer the agent owns is theirs wherever its region: the same rule as registering one
    li = Customer.objects.get(name="李秀英")
    assert (li.owner_id, li.region_id) == (shanghai_agent.pk, org.guangzhou.pk)


def test_every_row_joining_a_customer_outside_the_scope_is_reported_before_anything_is_written(
    org, admin, agent_importer
):
    make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)
    make_customer(
        admin, "林峰", "13926075513", emails=("linfeng@qq.com",), region_id=org.guangzhou.pk
    )
    content = xlsx_file(
        [
            ["黄丽", "13926075512", "", "", "", "", "", ""],
            ["王建国", "13817450021", "", "", "", "", "", ""],
            ["林峰", "", "linfeng@qq.com", "", "", "", "", ""],
        ],
    )
    job = imported(agent_importer, content)

    assert job.status == "failed"
    assert [(row, column) for row, column, _ in report(job)] == [(2, "手机号"), (4, "邮箱")]
    assert not Customer.objects.filter(name="王建国").exists()


@pytest.mark.parametrize("skip", [True, False], ids=["skip", "all-or-nothing"])
def test_a_customer_registered_elsewhere_while_the_file_is_validated_is_refused_at_write(
    org, admin, agent_importer, monkeypatch, skip
):
    real_write = service._write

    def someone_registers_him_meanwhile(*args: Any, **kwargs: Any) -> Any:
        make_customer(admin, "王建国", "13817450021", region_id=org.guangzhou.pk)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(service, "_write", someone_registers_him_meanwhile)
    content = xlsx_file(
        [
            ["李秀英", "13916620318", "", "", "", "", "", ""],
            ["王建国", "13817450021", "", "", "", "", "", ""],
        ]
    )

    job = imported(agent_importer, content, skip_invalid=skip)

    assert report(job) == [
        (3, "手机号", "该客户已存在，但不在您的数据范围内，请联系其负责人或主管")
    ]
    assert Customer.objects.filter(name="李秀英").exists() is skip
    assert job.status == ("done" if skip else "failed")


def test_a_regional_manager_may_place_customers_only_within_their_region(
    org, east_manager, east_importer, colleague, south_engineer
):
    content = xlsx_file(
        [
            ["周晓明", "13800138001", "", "浦东", "SH0088", "", "", ""],
            ["钱多多", "13800138003", "", "广州", "SH0088", "", "", ""],
            ["孙丽", "13800138004", "", "", south_engineer.employee_no, "", "", ""],
        ]
    )

    job = imported(east_importer, content, skip_invalid=True)

    assert report(job) == [
        (3, "区域", "客户将归属区域「广州」、负责人「刘洋」，不在您的数据范围内"),
        (4, "负责人工号", f"您无权把客户分配给「吴昊」（{south_engineer.employee_no}）"),
    ]
    assert list(Customer.objects.values_list("name", "owner_id")) == [("周晓明", colleague.pk)]


def test_an_uploader_frozen_before_the_run_imports_nothing(admin, importer):
    r = upload(importer, xlsx_file([["王建国", "13817450021", "", "", "", "", "", ""]]))
    Employee.objects.filter(pk=admin.pk).update(frozen_at=admin.created_at)

    run_worker()

    job = ImportJob.objects.get(pk=r.json()["id"])
    assert (job.status, job.message) == ("failed", "上传人的账号已停用或冻结，导入未执行")
    assert Customer.objects.count() == 0


# --- failures and progress ----------------------------------------------------------------


def test_a_crash_in_the_middle_of_writing_leaves_no_customer(importer, monkeypatch):
    rows = [[f"客户{i}", f"1380000{i:04d}", "", "", "", "", "标签甲", ""] for i in range(10)]
    real = service.resolve_in_transaction
    calls = []

    def dies_on_the_sixth_row(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("worker lost its database connection")
        return real(**kwargs)

    monkeypatch.setattr(service, "resolve_in_transaction", dies_on_the_sixth_row)
    before = written_rows()

    r = upload(importer, xlsx_file(rows))
    [task] = run_worker()

    assert len(calls) == 6  # five rows had been written inside the transaction
    assert written_rows() == before
    job = ImportJob.objects.get(pk=r.json()["id"])
    assert job.status == "failed"
    assert job.message.startswith("导入中途出错，已全部撤销，没有写入任何数据")
    task.refresh_from_db()
    assert task.status == TaskResultStatus.FAILED  # the queue keeps the traceback too
    assert "worker lost its database connection" in task.traceback


def test_a_job_runs_once_even_if_its_task_runs_twice(importer):
    r = upload(importer, xlsx_file([["王建国", "13817450021", "", "", "", "", "", ""]]))
    [task] = run_worker()

    again = service.import_job_run(job_id=r.json()["id"])

    assert again is None
    assert task.return_value == {"status": "done", "created": 1, "updated": 0, "skipped": 0}
    assert Customer.objects.count() == 1


def test_progress_moves_in_committed_steps(importer, monkeypatch):
    """What a poller sees: `processed_rows` as committed by each step (read back by a query of
    its own right after the step)."""
    monkeypatch.setattr(service, "PROGRESS_EVERY", 50)
    seen: list[tuple[str, int]] = []
    real = service.report_progress

    def watched(job_id: int, done: int, side: Any = None) -> None:
        real(job_id, done, side)
        if side is None:  # on PostgreSQL's side connection: see the transaction=True test
            seen.append(ImportJob.objects.values_list("status", "processed_rows").get(pk=job_id))

    monkeypatch.setattr(service, "report_progress", watched)
    rows = [[f"客户{i}", f"1370000{i:04d}", "", "", "", "", "", ""] for i in range(120)]

    imported(importer, xlsx_file(rows))

    assert seen[:3] == [("validating", 50), ("validating", 100), ("validating", 120)]


# --- volume -----------------------------------------------------------------------------------


def test_two_thousand_rows_import_in_one_go(admin, importer):
    rows = [
        [f"客户{i:04d}", f"139{i:08d}", f"c{i}@example.cn", "", "", "", f"批次{i % 3}", ""]
        for i in range(2000)
    ]
    started = time.monotonic()

    job = imported(importer, csv_file(rows), "两千行.csv")

    elapsed = time.monotonic() - started
    assert (job.status, job.created_count, job.total_rows) == ("done", 2000, 2000), job.message
    assert Customer.objects.count() == 2000
    assert Identity.objects.count() == 4000
    assert CustomerTag.objects.count() == 2000
    assert Tag.objects.filter(group__name="导入标签").count() == 3
    assert elapsed < 120, f"2,000 rows took {elapsed:.0f} s"


# --- property: any mix of good and bad rows -----------------------------------------------------

DEFECTS = {
    "none": lambda n, i: [f"例{n}客户{i}", f"136{n:04d}{i:04d}"],
    "no-name": lambda n, i: ["", f"136{n:04d}{i:04d}"],
    "short-phone": lambda n, i: [f"例{n}客户{i}", "13600"],
    "no-identity": lambda n, i: [f"例{n}客户{i}", ""],
    "repeat-of-first": lambda n, i: [f"例{n}客户{i}", f"136{n:04d}0000"],
}
_example = iter(range(1, 10_000))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(sorted(DEFECTS)), min_size=1, max_size=8), skip=st.booleans())
def test_any_mix_of_rows_writes_exactly_the_good_ones_or_nothing(importer, kinds, skip):
    # Examples share the test's database: each one's names and phones are its own.
    n = next(_example)
    rows = [DEFECTS["none"](n, 0), *(DEFECTS[k](n, i + 1) for i, k in enumerate(kinds))]
    bad = {i + 3 for i, k in enumerate(kinds) if k != "none"}

    job = imported(
        importer, csv_file(rows, header=["姓名", "手机号"]), "混合.csv", skip_invalid=skip
    )

    assert {e["row"] for e in job.errors} == bad
    written = set(
        Customer.objects.filter(name__startswith=f"例{n}客户").values_list("name", flat=True)
    )
    if skip or not bad:
        good = {f"例{n}客户{i}" for i, row in enumerate(rows) if i == 0 or kinds[i - 1] == "none"}
        assert (job.status, written) == ("done", good)
        assert job.created_count + job.skipped_count == job.total_rows == len(rows)
    else:
        assert (job.status, written) == ("failed", set())


# --- PostgreSQL: what another connection sees -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_another_connection_sees_progress_move_while_the_customers_stay_invisible(
    org, admin, client_as, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer: the writing phase reports its count when it commits")
    monkeypatch.setattr(service, "PROGRESS_EVERY", 40)
    main = connections["default"]
    poller = type(main)(main.settings_dict, "default")
    seen: list[tuple[str, int, int]] = []
    real = service.report_progress

    def watched(job_id: int, done: int, side: Any = None) -> None:
        real(job_id, done, side)
        with poller.cursor() as cursor:
            cursor.execute(
                "SELECT status, processed_rows FROM customers_importjob WHERE id = %s", [job_id]
            )
            status, processed = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM customers_customer")
            seen.append((status, processed, cursor.fetchone()[0]))

    monkeypatch.setattr(service, "report_progress", watched)
    rows = [[f"客户{i}", f"1350000{i:04d}", "", "", "", "", "", ""] for i in range(100)]
    try:
        job = imported(client_as(admin), xlsx_file(rows))
    finally:
        poller.close()

    assert job.status == "done"
    assert seen == [
        ("validating", 40, 0),
        ("validating", 80, 0),
        ("validating", 100, 0),
        ("writing", 40, 0),  # written, not yet committed: nobody else sees a customer
        ("writing", 80, 0),
        ("writing", 100, 0),
    ]
    assert Customer.objects.count() == 100


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_real_worker_process_runs_an_uploaded_import(admin, client_as, tmp_path: Path):
    from ..core.processes import run_worker_batch

    r = upload(client_as(admin), xlsx_file([["王建国", "13817450021", "", "", "", "", "", ""]]))
    assert r.status_code == 202, r.content

    code, output = run_worker_batch(tmp_path / "worker.log")

    assert code == 0, output
    job = ImportJob.objects.get(pk=r.json()["id"])
    assert (job.status, job.created_count) == ("done", 1), (job.message, output)
    assert DBTaskResult.objects.get().status == TaskResultStatus.SUCCESSFUL
