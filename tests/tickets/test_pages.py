"""The public pages without login: a template's form (/f/<token>) and a ticket's progress page
(/p/<token>) with its QR codes."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

import jingwei.tickets
from jingwei.flows.models import Task, TaskStatus
from jingwei.tickets import services
from jingwei.tickets.forms import BUILTIN_FORMS, builtin_form, check_definition, visible_fields
from jingwei.tickets.models import Ticket, Visibility

REPAIR_CONSULT = {
    "contact_name": "王先生",
    "contact_phone": "138 0000 1111",
    "service_type": "产品咨询",
    "question": "空调遥控器怎么设置定时？",
}


def publish(actor_of: Any, admin: Any, template: Any) -> str:
    published = services.template_publish_form(
        actor=actor_of(admin), template_id=template.pk, enabled=True
    )
    return str(published.public_token)


@pytest.fixture
def anonymous() -> Client:
    # What a customer's browser is: no session, and Django's CSRF check enforced.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def repair_token(shipped: dict[str, Any], admin: Any, actor_of: Any) -> str:
    return publish(actor_of, admin, shipped["after_sales_repair"])


def page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def field_block(text: str, key: str) -> str:
    """The markup of one field's block on the form page."""
    found = re.search(
        rf'<div class="field[^"]*" id="field-{key}"[^>]*>.*?</div>\s*(?=<div class="field|<p class="note|<div class="hp)',
        text,
        re.S,
    )
    assert found, f"no field {key} on the page"
    return found.group(0)


def submit_url(text: str) -> str:
    found = re.search(r'data-submit-url="([^"]+)"', text)
    assert found
    return found.group(1)


def submit(client: Client, url: str, answers: dict[str, Any], **extra: Any) -> Any:
    body = {"submission_id": extra.pop("submission_id", "page-load-0001"), "answers": answers}
    return client.post(url, json.dumps({**body, **extra}), content_type="application/json")


def assert_private(response: Any) -> None:
    assert response["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response["X-Robots-Tag"]


# --- the form page ---------------------------------------------------------------------------


def test_form_page_shows_the_fields_by_their_chinese_labels_without_login(
    anonymous: Client, repair_token: str
) -> None:
    r = anonymous.get(f"/f/{repair_token}")

    assert r.status_code == 200
    text = page_text(r)
    assert "<title>售后报修</title>" in text
    for label in ["联系人", "联系电话", "咨询类型", "咨询内容", "故障现象", "故障类型", "购买日期"]:
        assert f">{label}" in text
    assert '<option value="售后服务">售后服务</option>' in text
    assert 'type="tel"' in field_block(text, "contact_phone")
    assert 'type="datetime-local"' in field_block(text, "visit_time")
    assert 'type="password"' not in text and "/login" not in text and "/admin" not in text


def test_form_page_has_an_invisible_honeypot_named_website(
    anonymous: Client, repair_token: str
) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    found = re.search(r'<div class="hp" aria-hidden="true">.*?</div>', text, re.S)
    assert found
    honeypot = re.search(r"<input[^>]*name=\"website\"[^>]*>", found.group(0))
    assert honeypot
    assert 'tabindex="-1"' in honeypot.group(0)
    assert 'autocomplete="off"' in honeypot.group(0)


def test_form_page_is_kept_out_of_search_engines_and_referrers(
    anonymous: Client, repair_token: str
) -> None:
    r = anonymous.get(f"/f/{repair_token}")

    assert_private(r)
    assert '<meta name="robots" content="noindex' in r.content.decode()
    assert "script-src 'self'" in r["Content-Security-Policy"]


def test_form_page_loads_only_its_own_assets(anonymous: Client, repair_token: str) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    assets = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert "/static/tickets/public_form.js" in assets
    assert "/static/tickets/public.css" in assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))]


def test_fields_shown_only_under_a_condition_start_hidden(
    anonymous: Client, repair_token: str
) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    assert " hidden>" not in field_block(text, "service_type").split("\n")[0]
    assert field_block(text, "fault").split("\n")[0].endswith(" hidden>")
    assert field_block(text, "question").split("\n")[0].endswith(" hidden>")


def test_defaults_are_chosen_and_decide_what_shows(
    anonymous: Client, shipped: dict[str, Any], admin: Any, actor_of: Any
) -> None:
    token = publish(actor_of, admin, shipped["complaint"])

    text = page_text(anonymous.get(f"/f/{token}"))

    assert '<option value="B" selected>B 级：三个工作日内处理</option>' in text
    assert re.search(r'value="true" checked> <span>是</span>', field_block(text, "callback"))
    # 需要回电 is 是 by default, so its time slot shows from the start.
    assert not field_block(text, "callback_window").split("\n")[0].endswith(" hidden>")


def test_uploads_and_pickers_are_left_out_with_a_note(anonymous: Client, repair_token: str) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    for key in ["product", "warranty_proof", "photos", "parts"]:
        assert f'name="{key}"' not in text
    note = re.search(r'<p class="note">(.*?)</p>', text, re.S)
    assert note
    assert "本页面暂不支持" in note.group(1)
    for label in ["产品型号", "保修凭证", "故障照片", "预计所需备件"]:
        assert label in note.group(1)


def test_a_required_upload_shows_a_notice_where_it_would_be(
    anonymous: Client, shipped: dict[str, Any], admin: Any, actor_of: Any
) -> None:
    token = publish(actor_of, admin, shipped["shop_return"])

    block = field_block(page_text(anonymous.get(f"/f/{token}")), "photos")

    assert "商品照片" in block
    assert "本页面暂不支持" in block
    assert "<input" not in block


def test_region_field_offers_the_tenants_regions(
    anonymous: Client, repair_token: str, org: Any, other_org: Any
) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    block = field_block(text, "service_region")
    assert f'<option value="{org.east.pk}">华东</option>' in block
    assert f'<option value="{org.south.pk}">华南</option>' in block
    data = re.search(r'id="jw-regions" type="application/json">(.*?)<', text)
    assert data
    regions = json.loads(data.group(1))
    assert {r["name"] for r in regions} == {"华东", "上海", "浦东", "华南", "广州"}
    assert {r["id"] for r in regions}.isdisjoint({other_org.east.pk, other_org.shanghai.pk})


@pytest.mark.parametrize("token", ["nope", "x" * 30, "%20"])
def test_unknown_form_is_a_chinese_404(anonymous: Client, shipped: Any, token: str) -> None:
    r = anonymous.get(f"/f/{token}")

    assert r.status_code == 404
    assert "表单不存在或已关闭" in page_text(r)
    assert_private(r)


def test_closed_form_is_a_404(
    anonymous: Client, shipped: dict[str, Any], admin: Any, actor_of: Any, repair_token: str
) -> None:
    services.template_publish_form(
        actor=actor_of(admin), template_id=shipped["after_sales_repair"].pk, enabled=False
    )

    r = anonymous.get(f"/f/{repair_token}")

    assert r.status_code == 404
    assert "表单不存在或已关闭" in page_text(r)


# --- sending the form as the page does -------------------------------------------------------


def test_the_page_sends_to_an_address_that_takes_it_without_login_or_csrf_token(
    anonymous: Client, repair_token: str
) -> None:
    url = submit_url(page_text(anonymous.get(f"/f/{repair_token}")))

    r = submit(anonymous, url, REPAIR_CONSULT)

    assert r.status_code == 201, r.content
    ticket = Ticket.objects.get(number=r.json()["number"])
    assert ticket.answers["service_type"] == "产品咨询"
    assert r.json()["progress_url"].endswith(f"/p/{ticket.progress_token}")


def test_the_same_page_load_sent_twice_makes_one_ticket(
    anonymous: Client, repair_token: str
) -> None:
    url = submit_url(page_text(anonymous.get(f"/f/{repair_token}")))

    first = submit(anonymous, url, REPAIR_CONSULT, submission_id="a1b2c3d4e5f60718")
    second = submit(anonymous, url, REPAIR_CONSULT, submission_id="a1b2c3d4e5f60718")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["number"] == second.json()["number"]
    assert Ticket.objects.count() == 1


def test_a_filled_honeypot_is_told_it_worked_and_nothing_is_stored(
    anonymous: Client, repair_token: str
) -> None:
    url = submit_url(page_text(anonymous.get(f"/f/{repair_token}")))

    r = submit(anonymous, url, REPAIR_CONSULT, website="http://spam.example")

    assert r.status_code == 201
    assert r.json()["number"] is None
    assert not Ticket.objects.exists()


def test_mistakes_come_back_per_field_for_the_page_to_show_beside_each(
    anonymous: Client, repair_token: str
) -> None:
    text = page_text(anonymous.get(f"/f/{repair_token}"))

    r = submit(
        anonymous,
        submit_url(text),
        {"contact_phone": "12345", "service_type": "售后服务", "fault": "坏了"},
    )

    assert r.status_code == 422
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors["answers.contact_name"] == "请填写联系人"
    assert errors["answers.fault"] == "故障现象至少 5 个字"
    assert errors["answers.service_region"] == "请选择上门地区"
    for field in errors:  # every message has its place on the page
        assert f'id="err-{field.removeprefix("answers.")}"' in text


def test_a_region_chosen_from_the_page_is_accepted(
    anonymous: Client, repair_token: str, org: Any
) -> None:
    url = submit_url(page_text(anonymous.get(f"/f/{repair_token}")))
    answers = {
        **REPAIR_CONSULT,
        "service_type": "售后服务",
        "fault": "开机后不制冷，室外机不转",
        "warranty": "在保",
        "service_region": [org.east.pk, org.shanghai.pk, org.pudong.pk],
        "service_address": "世纪大道 100 号",
        "visit_time": "2099-01-31T09:30:00+08:00",  # as the page sends a datetime-local value
    }

    r = submit(anonymous, url, answers)

    assert r.status_code == 201, r.content
    ticket = Ticket.objects.get(number=r.json()["number"])
    assert ticket.answers["service_region"] == [org.east.pk, org.shanghai.pk, org.pudong.pk]


# --- the progress page -----------------------------------------------------------------------


@pytest.fixture
def ticket(anonymous: Client, repair_token: str) -> Ticket:
    r = submit(anonymous, f"/api/public/forms/{repair_token}", REPAIR_CONSULT)
    assert r.status_code == 201, r.content
    return Ticket.objects.get(number=r.json()["number"])


def complete_first_task(ticket: Ticket, admin: Any, actor_of: Any) -> None:
    from jingwei.flows.services import task_complete

    task = Task.objects.filter(instance=ticket.instance, status=TaskStatus.OPEN).first()
    assert task is not None
    task_complete(actor=actor_of(admin), task_id=task.pk)


def test_progress_page_shows_number_status_and_steps(
    anonymous: Client, ticket: Ticket, admin: Any, actor_of: Any
) -> None:
    complete_first_task(ticket, admin, actor_of)

    r = anonymous.get(f"/p/{ticket.progress_token}")

    assert r.status_code == 200
    text = page_text(r)
    assert ticket.number in text
    assert "售后报修" in text
    assert "处理中" in text
    steps = re.findall(r'<li class="step step-(\w+)".*?<span class="name">(.*?)</span>', text, re.S)
    assert steps[:3] == [("done", "受理"), ("current", "派单"), ("next", "处理")]
    assert all(state == "todo" for state, _ in steps[3:])
    done = re.search(r'step-done.*?<span class="state">(.*?)</span>', text, re.S)
    assert done and re.search(r"已完成 · \d{4}-\d{2}-\d{2} \d{2}:\d{2}", done.group(1))
    assert "✓" in text


def test_progress_page_shows_public_comments_and_hides_internal_ones(
    anonymous: Client, ticket: Ticket, admin: Any, actor_of: Any
) -> None:
    services.comment_add(
        actor=actor_of(admin),
        ticket=ticket,
        body="工程师明天上午上门",
        visibility=Visibility.PUBLIC,
    )
    services.comment_add(
        actor=actor_of(admin),
        ticket=ticket,
        body="客户脾气急，注意沟通",
        visibility=Visibility.INTERNAL,
    )

    text = page_text(anonymous.get(f"/p/{ticket.progress_token}"))

    assert "工程师明天上午上门" in text
    assert "客服" in text
    assert "客户脾气急" not in text
    assert admin.name not in text  # no staff names
    assert "13800001111" not in text and "空调遥控器" not in text  # no answers


def test_progress_page_shows_its_qr_code_and_is_private(anonymous: Client, ticket: Ticket) -> None:
    r = anonymous.get(f"/p/{ticket.progress_token}")

    assert_private(r)
    assert '<meta name="robots" content="noindex' in r.content.decode()
    assert f'src="/p/{ticket.progress_token}/qr.svg"' in r.content.decode()


def test_progress_page_escapes_what_customers_wrote(
    anonymous: Client, ticket: Ticket, admin: Any, actor_of: Any
) -> None:
    services.comment_add(
        actor=actor_of(admin), ticket=ticket, body="<script>x()</script>", visibility="public"
    )

    body = anonymous.get(f"/p/{ticket.progress_token}").content.decode()

    assert "<script>x()" not in body
    assert "&lt;script&gt;x()" in body


@pytest.mark.parametrize("token", ["nope", "y" * 32, "z" * 80])
def test_unknown_progress_page_is_a_chinese_404(
    anonymous: Client, shipped: Any, token: str
) -> None:
    r = anonymous.get(f"/p/{token}")

    assert r.status_code == 404
    assert "进度页不存在" in page_text(r)


def test_qr_codes_come_as_png_and_svg(anonymous: Client, ticket: Ticket) -> None:
    png = anonymous.get(f"/p/{ticket.progress_token}/qr.png")
    svg = anonymous.get(f"/p/{ticket.progress_token}/qr.svg")

    assert (png.status_code, png["Content-Type"]) == (200, "image/png")
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert (svg.status_code, svg["Content-Type"]) == (200, "image/svg+xml")
    assert b"<svg" in svg.content
    assert_private(png)


def test_qr_of_an_unknown_token_is_a_404(anonymous: Client, shipped: Any) -> None:
    assert anonymous.get("/p/nope/qr.png").status_code == 404
    assert anonymous.get("/p/nope/qr.svg").status_code == 404


# --- public_form.js decides what shows as the server does ------------------------------------

SCRIPT = Path(jingwei.tickets.__file__).parent / "static" / "tickets" / "public_form.js"
HARNESS = """
const page = require(process.argv[1]);
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const q = JSON.parse(line);
  const ctx = { now: q.now, timeZone: "Asia/Shanghai" };
  process.stdout.write(JSON.stringify(page.visibleFields(q.definition, q.answers, ctx)) + "\\n");
});
"""
NOW = datetime(2025, 6, 1, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


class PageScript:
    def __init__(self, process: subprocess.Popen[str]):
        self.process = process

    def visible(self, definition: Any, answers: dict[str, Any]) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"definition": definition, "answers": answers, "now": NOW.timestamp() * 1000}
        self.process.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "public_form.js stopped"
        shown: list[str] = json.loads(line)
        return shown


@pytest.fixture(scope="module")
def page_script() -> Iterator[PageScript]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    process = subprocess.Popen(
        [node, "-e", HARNESS, str(SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        yield PageScript(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


# Every kind a condition can look at, each operator, a group and a chain.
CONDITIONS = {
    "schema": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "price": {"maximum": 1000},
            "day": {"formatMaximum": "today"},
            "at": {},
            "name": {"maxLength": 10, "pattern": "^[a-z]+$"},
            "phone": {},
            "email": {},
            "agree": {},
            "tags": {"items": {"enum": ["a", "b", "c"]}, "maxItems": 2},
            "area": {"minItems": 2},
            "adult": {"x-visible-when": {"field": "age", "op": "gte", "value": 18}},
            "pricey": {
                "x-visible-when": {
                    "all": [
                        {"field": "price", "op": "gt", "value": "100"},
                        {"field": "price", "op": "lte", "value": 500.5},
                    ]
                }
            },
            "old_day": {"x-visible-when": {"field": "day", "op": "lt", "value": "2025-01-01"}},
            "late": {
                "x-visible-when": {"field": "at", "op": "gte", "value": "2025-06-01T12:00:00+08:00"}
            },
            "named": {"x-visible-when": {"field": "name", "op": "in", "value": ["abc", "xyz"]}},
            "phoned": {"x-visible-when": {"field": "phone", "op": "not_empty"}},
            "no_email": {"x-visible-when": {"field": "email", "op": "empty"}},
            "agreed": {"x-visible-when": {"field": "agree", "op": "ne", "value": False}},
            "tag_b": {"x-visible-when": {"field": "tags", "op": "eq", "value": "b"}},
            "not_ac": {"x-visible-when": {"field": "tags", "op": "not_in", "value": ["a", "c"]}},
            "placed": {"x-visible-when": {"field": "area", "op": "not_empty"}},
            "dated": {"x-visible-when": {"field": "day", "op": "not_empty"}},
            "priced": {"x-visible-when": {"field": "price", "op": "ne", "value": "0"}},
            "chain": {
                "x-visible-when": {
                    "any": [
                        {"field": "adult", "op": "not_empty"},
                        {"field": "named", "op": "eq", "value": "yes"},
                    ]
                }
            },
        },
    },
    "ui": {
        "age": {"label": "年龄", "widget": "number"},
        "price": {"label": "价格", "widget": "money"},
        "day": {"label": "日期", "widget": "date"},
        "at": {"label": "时间", "widget": "datetime"},
        "name": {"label": "名字", "widget": "text"},
        "phone": {"label": "电话", "widget": "phone"},
        "email": {"label": "邮箱", "widget": "email"},
        "agree": {"label": "同意", "widget": "boolean"},
        "tags": {"label": "标签", "widget": "multiselect"},
        "area": {"label": "地区", "widget": "region"},
        "adult": {"label": "成年", "widget": "text"},
        "pricey": {"label": "贵", "widget": "text"},
        "old_day": {"label": "早", "widget": "text"},
        "late": {"label": "晚", "widget": "text"},
        "named": {"label": "名", "widget": "text"},
        "phoned": {"label": "有电话", "widget": "text"},
        "no_email": {"label": "无邮箱", "widget": "text"},
        "agreed": {"label": "已同意", "widget": "text"},
        "tag_b": {"label": "有 b", "widget": "text"},
        "not_ac": {"label": "非 a c", "widget": "text"},
        "placed": {"label": "有地区", "widget": "text"},
        "dated": {"label": "有日期", "widget": "text"},
        "priced": {"label": "有价", "widget": "text"},
        "chain": {"label": "连锁", "widget": "text"},
    },
}

# Answers a person (or a broken client) may send: valid, wrong, empty, for each kind.
SAMPLES: dict[str, list[Any]] = {
    "number": ["17", "18", "18.0", 18, "150", "151", "-1", "1.5", "1e3", "abc", " 40 "],
    "money": [
        "100",
        "100.01",
        "500.50",
        "500.51",
        200,
        "150.125",
        "0.00",
        "0",
        "-5",
        "1000.00",
        "x",
    ],
    "date": ["2024-12-31", "2025-01-01", "2025-06-01", "2025-06-02", "2025-02-30", "2025/01/01"],
    "datetime": [
        "2025-06-01T12:00:00+08:00",
        "2025-06-01T04:00:00Z",
        "2025-06-01T11:59+08:00",
        "2025-06-01T12:00:00",
        "2025-13-01T12:00:00+08:00",
    ],
    "text": ["abc", " xyz ", "ABC", "abcdefghijk", "a\nb", "yes", "不是字母", 5],
    "textarea": ["写了点什么", "yes"],
    "phone": ["13800001111", "138 0000 1111", "+86 138 0000 1111", "021-62345678", "12345", "abc"],
    "email": ["Wang@Example.com", " a@b.cn ", "bad", "a@b", "a b@c.d"],
    "boolean": [True, False, "true", 0],
    "multiselect": [["a"], ["b"], ["a", "b"], ["b", "c"], ["a", "b", "c"], ["b", "b"], ["d"], "b"],
    "region": [[1, 2], [1], [1, 2, 3], 7, "r-7", [0], [True], ["x y"]],
    "select": [],
}
EMPTY: list[Any] = [None, "", "  ", []]


def answers_for(definition: dict[str, Any], *, fill: Any) -> Any:
    """A strategy of answers: any subset of the fillable fields, each a sample of its kind."""
    keys = [
        k
        for k, ui in definition["ui"].items()
        if ui["widget"] in SAMPLES or ui["widget"] == "textarea"
    ]

    def samples(key: str) -> Any:
        ui, schema = definition["ui"][key], definition["schema"]["properties"][key]
        kind = ui["widget"]
        pool = list(SAMPLES.get(kind, []))
        if kind == "select":
            pool = [*schema["enum"], "不存在的选项"]
        if kind == "multiselect":
            options = schema["items"]["enum"]
            pool += [[o] for o in options] + [options[:2], options[-1:] * 2]
        return fill.sampled_from(pool + EMPTY)

    return fill.fixed_dictionaries({}, optional={k: samples(k) for k in keys})


def test_conditions_definition_is_valid() -> None:
    check_definition(CONDITIONS)


@pytest.mark.parametrize("name", [*BUILTIN_FORMS, "conditions"])
def test_page_script_shows_the_fields_the_server_shows(page_script: PageScript, name: str) -> None:
    definition = dict(
        check_definition(CONDITIONS if name == "conditions" else builtin_form(name)).data
    )

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(answers=answers_for(definition, fill=st))
    def check(answers: dict[str, Any]) -> None:
        expected = visible_fields(definition, answers, now=NOW)
        assert page_script.visible(definition, answers) == expected, answers

    check()
