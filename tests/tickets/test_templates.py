"""Ticket templates: versions a ticket keeps, global templates and regional overrides, who may
edit which, revert in one call, overrides rebuilt on a new global version, and bad definitions
refused naming the path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import pytest
from django.test import Client

from jingwei.org.models import Employee
from jingwei.tickets.demo import COLD_CHAIN_FIELDS
from jingwei.tickets.models import TemplateVersion, Ticket, TicketTemplate
from jingwei.tickets.services.templates import template_for, template_update

from ..conftest import Org
from ..factories import EmployeeFactory, grant

TEMPLATES = "/api/tickets/templates"
MANAGE_TEMPLATES = "ticket.template_manage"

# A campaign's temporary field (双十一以旧换新), added to the global after-sales form.
CAMPAIGN_FIELD = {
    "schema": {"type": "string", "maxLength": 20},
    "ui": {"label": "活动券码", "widget": "text", "order": 35},
}


# --- helpers ---------------------------------------------------------------------------------


def consult(**extra: Any) -> dict[str, Any]:
    """Answers of the after-sales form on its short path (产品咨询)."""
    return {
        "contact_name": "王先生",
        "contact_phone": "13800001111",
        "service_type": "产品咨询",
        "question": "空调遥控器怎么设置定时",
        **extra,
    }


def repair(org: Org, **extra: Any) -> dict[str, Any]:
    """Answers of the after-sales form on its repair path (售后服务), where 冷链物流追踪 shows."""
    return {
        "contact_name": "张丽华",
        "contact_phone": "13601852266",
        "service_type": "售后服务",
        "fault": "空调外机异响，制冷效果差",
        "warranty": "过保",
        "service_region": [org.east.pk, org.shanghai.pk, org.pudong.pk],
        "service_address": "上海市浦东新区世纪大道 100 号",
        **extra,
    }


def with_field(form: dict[str, Any], key: str, field: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(form)
    out["schema"]["properties"][key] = copy.deepcopy(field["schema"])
    out["ui"][key] = copy.deepcopy(field["ui"])
    return out


def own(key: str, label: str, **schema: Any) -> dict[str, Any]:
    """A region's own fields: one text field."""
    return {
        "schema": {"properties": {key: {"type": "string", "maxLength": 40, **schema}}},
        "ui": {key: {"label": label, "widget": "text", "order": 900}},
    }


def ticket_in(client: Client, region_id: int, answers: dict[str, Any]) -> Any:
    return client.post(
        "/api/tickets",
        {"template": "after_sales_repair", "region_id": region_id, "answers": answers},
        content_type="application/json",
    )


def template_manager(org: Org, region: Any, name: str) -> Employee:
    """Someone with template rights over `region` (and below) and the right to create tickets."""
    e = cast(
        Employee,
        EmployeeFactory(tenant=org.tenant, name=name, department=org.east_dept, region=region),
    )
    grant(e, [MANAGE_TEMPLATES, "ticket.create", "ticket.view"], "region")
    return e


@pytest.fixture
def repair_template(shipped: dict[str, Any]) -> TicketTemplate:
    template: TicketTemplate = shipped["after_sales_repair"]
    return template


@pytest.fixture
def east_templates(org: Org, east_manager: Employee) -> Employee:
    """The 华东 manager, with template rights anchored at 华东."""
    grant(east_manager, [MANAGE_TEMPLATES, "ticket.create", "ticket.view"], "region")
    return east_manager


@pytest.fixture
def agent(shanghai_agent: Employee) -> Employee:
    """An agent who only fills in tickets."""
    grant(shanghai_agent, ["ticket.create"], "self")
    return shanghai_agent


@pytest.fixture
def east_override(
    repair_template: TicketTemplate, org: Org, east_templates: Employee, client_as: Any
) -> dict[str, Any]:
    """华东's override of the after-sales template adding 冷链物流追踪, made by the 华东 manager."""
    r = client_as(east_templates).post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": COLD_CHAIN_FIELDS, "note": "华东冷链"},
        content_type="application/json",
    )
    assert r.status_code == 201, r.json()
    body: dict[str, Any] = r.json()
    return body


def current_form(client: Client, template_id: int) -> dict[str, Any]:
    r = client.get(f"{TEMPLATES}/{template_id}")
    assert r.status_code == 200, r.json()
    form: dict[str, Any] = r.json()["current_version"]["form"]
    return form


# --- a ticket keeps its version --------------------------------------------------------------


def test_a_ticket_keeps_the_form_version_it_was_made_with(
    repair_template: TicketTemplate, admin: Employee, agent: Employee, org: Org, client_as: Any
) -> None:
    hq, filler = client_as(admin), client_as(agent)
    old = ticket_in(filler, org.pudong.pk, consult())
    assert old.status_code == 201, old.json()
    assert old.json()["template_version"] == 1

    # HQ adds a campaign field: a new version, the ticket already made keeps version 1.
    form = with_field(current_form(hq, repair_template.pk), "campaign_code", CAMPAIGN_FIELD)
    r = hq.patch(
        f"{TEMPLATES}/{repair_template.pk}",
        {"form": form, "note": "双十一活动"},
        content_type="application/json",
    )
    assert r.status_code == 200, r.json()
    assert r.json()["current_version"]["number"] == 2
    assert "campaign_code" in r.json()["current_version"]["form"]["schema"]["properties"]

    detail = hq.get(f"/api/tickets/{old.json()['id']}").json()
    assert detail["template_version"] == 1
    assert "campaign_code" not in detail["form"]["schema"]["properties"]

    new = ticket_in(filler, org.pudong.pk, consult(campaign_code="SALE1111"))
    assert new.status_code == 201, new.json()
    assert new.json()["template_version"] == 2
    assert new.json()["answers"]["campaign_code"] == "SALE1111"
    assert "campaign_code" in new.json()["form"]["schema"]["properties"]

    versions = hq.get(f"{TEMPLATES}/{repair_template.pk}/versions").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[0]["note"] == "双十一活动"
    assert versions[0]["flow_key"] == versions[1]["flow_key"] == "after_sales"


def test_renaming_a_template_makes_no_new_version(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    r = client_as(admin).patch(
        f"{TEMPLATES}/{repair_template.pk}",
        {"name": "售后报修（新）"},
        content_type="application/json",
    )
    assert r.status_code == 200, r.json()
    assert r.json()["name"] == "售后报修（新）"
    assert r.json()["current_version"]["number"] == 1


def test_a_version_once_written_is_not_changed_by_later_edits(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    first = TemplateVersion.objects.get(template=repair_template, number=1)
    before = copy.deepcopy(first.form)
    form = with_field(before, "campaign_code", CAMPAIGN_FIELD)
    assert (
        hq.patch(
            f"{TEMPLATES}/{repair_template.pk}",
            {"form": form, "default_priority": "A"},
            content_type="application/json",
        ).status_code
        == 200
    )
    first.refresh_from_db()
    assert first.form == before
    assert first.default_priority == "B"


# --- global template and regional overrides ---------------------------------------------------


def test_a_pudong_ticket_gets_the_east_override_field_and_it_is_validated(
    east_override: dict[str, Any], agent: Employee, org: Org, client_as: Any
) -> None:
    filler = client_as(agent)
    too_long = ticket_in(filler, org.pudong.pk, repair(org, cold_chain_tracking="L" * 41))
    assert too_long.status_code == 422, too_long.json()
    assert too_long.json()["field"] == "cold_chain_tracking"
    assert {e["field"] for e in too_long.json()["errors"]} == {"answers.cold_chain_tracking"}

    r = ticket_in(filler, org.pudong.pk, repair(org, cold_chain_tracking="SF1234567890"))
    assert r.status_code == 201, r.json()
    assert r.json()["template_id"] == east_override["id"]
    assert r.json()["answers"]["cold_chain_tracking"] == "SF1234567890"
    assert "cold_chain_tracking" in r.json()["form"]["schema"]["properties"]
    # The override adds to HQ's form: every global field is still asked.
    assert {"fault", "warranty", "service_address"} <= set(r.json()["form"]["schema"]["properties"])


def test_a_guangzhou_ticket_does_not_have_the_east_field(
    east_override: dict[str, Any],
    repair_template: TicketTemplate,
    admin: Employee,
    org: Org,
    client_as: Any,
) -> None:
    hq = client_as(admin)
    answers = consult()
    refused = ticket_in(hq, org.guangzhou.pk, {**answers, "cold_chain_tracking": "SF1"})
    assert refused.status_code == 422, refused.json()
    assert refused.json()["errors"][0]["field"] == "answers.cold_chain_tracking"
    assert refused.json()["errors"][0]["code"] == "unknown_field"

    r = ticket_in(hq, org.guangzhou.pk, answers)
    assert r.status_code == 201, r.json()
    assert r.json()["template_id"] == repair_template.pk
    assert "cold_chain_tracking" not in r.json()["form"]["schema"]["properties"]


def test_the_nearest_active_override_up_the_region_tree_is_used(
    east_override: dict[str, Any], repair_template: TicketTemplate, org: Org, admin: Employee
) -> None:
    from jingwei.org.scope import actor_for
    from jingwei.tickets.services.templates import override_create

    shanghai = override_create(
        actor=actor_for(admin),
        template_id=repair_template.pk,
        region_id=org.shanghai.pk,
        own_fields=own("metro_line", "地铁线路"),
    )
    tenant = org.tenant.pk

    def used(region: Any) -> int:
        return template_for(
            tenant_id=tenant, key="after_sales_repair", region_id=region.pk if region else None
        ).pk

    assert used(org.pudong) == shanghai.pk
    assert used(org.shanghai) == shanghai.pk
    assert used(org.east) == east_override["id"]
    assert used(org.guangzhou) == repair_template.pk
    assert used(None) == repair_template.pk

    TicketTemplate.objects.filter(pk=shanghai.pk).update(is_active=False)
    assert used(org.pudong) == east_override["id"]


def test_an_override_cannot_redefine_a_global_field(
    repair_template: TicketTemplate, org: Org, east_templates: Employee, client_as: Any
) -> None:
    manager = client_as(east_templates)
    r = manager.post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": own("fault", "故障（华东）")},
        content_type="application/json",
    )
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "field_in_base"
    assert r.json()["field"] == "own_fields.schema.properties.fault"
    assert not TicketTemplate.objects.filter(region=org.east).exists()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        # Relabelling HQ's field through the override's ui.
        (
            lambda f: f["ui"].__setitem__(
                "fault", {"label": "故障（华东说法）", "widget": "textarea"}
            ),
            "own_fields.ui.fault",
        ),
        # Making an optional HQ field required in the region.
        (
            lambda f: f["schema"].__setitem__("required", ["product"]),
            "own_fields.schema.required.0",
        ),
    ],
    ids=["ui", "required"],
)
def test_an_override_cannot_change_a_global_field_through_ui_or_required(
    change: Callable[[dict[str, Any]], None],
    path: str,
    repair_template: TicketTemplate,
    org: Org,
    east_templates: Employee,
    client_as: Any,
) -> None:
    fields: dict[str, Any] = copy.deepcopy(COLD_CHAIN_FIELDS)
    change(fields)
    r = client_as(east_templates).post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": fields},
        content_type="application/json",
    )
    assert r.status_code == 409, r.json()
    assert (r.json()["code"], r.json()["field"]) == ("field_in_base", path)
    assert not TicketTemplate.objects.filter(region=org.east).exists()


def test_an_override_may_require_its_own_field(
    repair_template: TicketTemplate, org: Org, east_templates: Employee, client_as: Any
) -> None:
    fields = own("cold_chain_tracking", "冷链物流追踪号")
    fields["schema"]["required"] = ["cold_chain_tracking"]
    manager = client_as(east_templates)
    r = manager.post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": fields},
        content_type="application/json",
    )
    assert r.status_code == 201, r.json()
    t = ticket_in(manager, org.pudong.pk, consult())
    assert t.status_code == 422, t.json()
    assert t.json()["errors"][0] == {
        "field": "answers.cold_chain_tracking",
        "code": "required",
        "message": t.json()["errors"][0]["message"],
    }


def test_an_override_edit_cannot_redefine_a_global_field_either(
    east_override: dict[str, Any], east_templates: Employee, client_as: Any
) -> None:
    manager = client_as(east_templates)
    fields: dict[str, Any] = copy.deepcopy(COLD_CHAIN_FIELDS)
    fields["schema"]["properties"]["warranty"] = {"type": "string"}
    fields["ui"]["warranty"] = {"label": "保修", "widget": "text"}
    r = manager.patch(
        f"{TEMPLATES}/{east_override['id']}",
        {"own_fields": fields},
        content_type="application/json",
    )
    assert r.status_code == 409, r.json()
    assert (r.json()["code"], r.json()["field"]) == (
        "field_in_base",
        "own_fields.schema.properties.warranty",
    )
    assert (
        manager.get(f"{TEMPLATES}/{east_override['id']}").json()["current_version"]["number"] == 1
    )


def test_an_override_changes_only_its_own_fields_not_the_global_form(
    east_override: dict[str, Any], east_templates: Employee, client_as: Any
) -> None:
    manager = client_as(east_templates)
    form = east_override["current_version"]["form"]
    r = manager.patch(
        f"{TEMPLATES}/{east_override['id']}", {"form": form}, content_type="application/json"
    )
    assert r.status_code == 422, r.json()
    assert (r.json()["code"], r.json()["field"]) == ("override_form", "form")


def test_a_region_has_one_override_per_template(
    east_override: dict[str, Any],
    repair_template: TicketTemplate,
    org: Org,
    admin: Employee,
    client_as: Any,
) -> None:
    r = client_as(admin).post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": own("other", "其他")},
        content_type="application/json",
    )
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "override_exists"


def test_an_override_is_made_on_a_global_template_only(
    east_override: dict[str, Any], org: Org, admin: Employee, client_as: Any
) -> None:
    r = client_as(admin).post(
        f"{TEMPLATES}/{east_override['id']}/overrides",
        {"region_id": org.shanghai.pk, "own_fields": own("metro_line", "地铁线路")},
        content_type="application/json",
    )
    assert r.status_code == 422, r.json()
    assert (r.json()["code"], r.json()["field"]) == ("not_global", "template_id")


# --- who may edit which ----------------------------------------------------------------------


def test_hq_edits_the_global_template(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    r = client_as(admin).patch(
        f"{TEMPLATES}/{repair_template.pk}",
        {"default_priority": "A"},
        content_type="application/json",
    )
    assert r.status_code == 200, r.json()
    assert r.json()["current_version"]["default_priority"] == "A"


def test_the_east_manager_edits_the_east_override(
    east_override: dict[str, Any], east_templates: Employee, client_as: Any
) -> None:
    fields: dict[str, Any] = copy.deepcopy(COLD_CHAIN_FIELDS)
    fields["schema"]["properties"]["cold_box_no"] = {"type": "string", "maxLength": 20}
    fields["ui"]["cold_box_no"] = {"label": "冷箱编号", "widget": "text", "order": 910}
    r = client_as(east_templates).patch(
        f"{TEMPLATES}/{east_override['id']}",
        {"own_fields": fields},
        content_type="application/json",
    )
    assert r.status_code == 200, r.json()
    version = r.json()["current_version"]
    assert version["number"] == 2
    assert {"cold_chain_tracking", "cold_box_no"} <= set(version["form"]["schema"]["properties"])


def test_a_shanghai_manager_cannot_edit_the_east_override(
    east_override: dict[str, Any], org: Org, client_as: Any
) -> None:
    shanghai_manager = template_manager(org, org.shanghai, "上海主管")
    r = client_as(shanghai_manager).patch(
        f"{TEMPLATES}/{east_override['id']}", {"name": "改名"}, content_type="application/json"
    )
    assert r.status_code == 403, r.json()


@pytest.mark.parametrize(
    ("who", "action"),
    [
        ("east_manager", "edit_global"),
        ("east_manager", "create_global"),
        ("east_manager", "revert_global"),
        ("east_manager", "publish_global"),
        ("east_manager", "override_south"),
        ("agent", "edit_global"),
        ("agent", "edit_east"),
        ("agent", "override_east"),
        ("agent", "create_global"),
    ],
)
def test_who_may_not_edit_gets_403_and_nothing_changes(
    who: str,
    action: str,
    east_override: dict[str, Any],
    repair_template: TicketTemplate,
    east_templates: Employee,
    agent: Employee,
    org: Org,
    client_as: Any,
) -> None:
    client = client_as(east_templates if who == "east_manager" else agent)
    versions = TemplateVersion.objects.count()
    templates = TicketTemplate.objects.count()
    g, east = repair_template.pk, east_override["id"]
    requests: dict[str, Callable[[], Any]] = {
        "edit_global": lambda: client.patch(
            f"{TEMPLATES}/{g}", {"default_priority": "S"}, content_type="application/json"
        ),
        "create_global": lambda: client.post(
            TEMPLATES,
            {
                "key": "east_only",
                "name": "华东专用",
                "form": current_form(client_as(agent), g),
                "flow_key": "after_sales",
            },
            content_type="application/json",
        ),
        "revert_global": lambda: client.post(
            f"{TEMPLATES}/{g}/revert", {}, content_type="application/json"
        ),
        "publish_global": lambda: client.post(
            f"{TEMPLATES}/{g}/public-form", {"enabled": True}, content_type="application/json"
        ),
        "override_south": lambda: client.post(
            f"{TEMPLATES}/{g}/overrides",
            {"region_id": org.south.pk, "own_fields": own("typhoon_level", "台风等级")},
            content_type="application/json",
        ),
        "override_east": lambda: client.post(
            f"{TEMPLATES}/{g}/overrides",
            {"region_id": org.shanghai.pk, "own_fields": own("metro_line", "地铁线路")},
            content_type="application/json",
        ),
        "edit_east": lambda: client.patch(
            f"{TEMPLATES}/{east}", {"name": "改名"}, content_type="application/json"
        ),
    }
    r = requests[action]()
    assert r.status_code == 403, r.json()
    assert TemplateVersion.objects.count() == versions
    assert TicketTemplate.objects.count() == templates
    repair_template.refresh_from_db()
    assert repair_template.public_token == ""


def test_another_tenants_template_answers_404(
    repair_template: TicketTemplate, other_admin: Employee, client_as: Any
) -> None:
    stranger = client_as(other_admin)
    g = repair_template.pk
    assert stranger.get(f"{TEMPLATES}/{g}").status_code == 404
    assert stranger.get(f"{TEMPLATES}/{g}/versions").status_code == 404
    assert (
        stranger.patch(f"{TEMPLATES}/{g}", {"name": "x"}, content_type="application/json")
    ).status_code == 404
    assert (
        stranger.post(f"{TEMPLATES}/{g}/revert", {}, content_type="application/json")
    ).status_code == 404


def test_an_override_for_another_tenants_region_is_refused_like_a_missing_one(
    repair_template: TicketTemplate, other_org: Org, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    answers = []
    for region_id in (other_org.east.pk, 2_000_000_000):
        r = hq.post(
            f"{TEMPLATES}/{repair_template.pk}/overrides",
            {"region_id": region_id, "own_fields": own("x_field", "某字段")},
            content_type="application/json",
        )
        answers.append((r.status_code, r.json()["code"], r.json()["field"]))
    assert answers[0] == answers[1] == (422, "invalid_reference", "region_id")


# --- revert ----------------------------------------------------------------------------------


def test_a_campaign_field_is_reverted_in_one_call(
    repair_template: TicketTemplate, admin: Employee, agent: Employee, org: Org, client_as: Any
) -> None:
    hq = client_as(admin)
    g = repair_template.pk
    v1 = hq.get(f"{TEMPLATES}/{g}").json()["current_version"]
    form = with_field(v1["form"], "campaign_code", CAMPAIGN_FIELD)
    hq.patch(f"{TEMPLATES}/{g}", {"form": form}, content_type="application/json")
    during = ticket_in(client_as(agent), org.pudong.pk, consult(campaign_code="SALE1111"))
    assert during.status_code == 201, during.json()

    r = hq.post(f"{TEMPLATES}/{g}/revert", {"note": "活动结束"}, content_type="application/json")
    assert r.status_code == 200, r.json()
    v3 = r.json()["current_version"]
    assert v3["number"] == 3
    assert v3["note"] == "活动结束"
    for key in ("form", "own_fields", "flow_key", "default_priority"):
        assert v3[key] == v1[key], key

    # The campaign's ticket still shows the field it was made with; new tickets cannot use it.
    assert hq.get(f"/api/tickets/{during.json()['id']}").json()["template_version"] == 2
    after = ticket_in(client_as(agent), org.pudong.pk, consult(campaign_code="SALE1111"))
    assert after.status_code == 422
    assert after.json()["errors"][0]["field"] == "answers.campaign_code"
    assert [v["number"] for v in hq.get(f"{TEMPLATES}/{g}/versions").json()] == [3, 2, 1]


def test_reverting_twice_goes_back_and_forth(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    g = repair_template.pk
    hq.patch(f"{TEMPLATES}/{g}", {"default_priority": "A"}, content_type="application/json")
    hq.post(f"{TEMPLATES}/{g}/revert", {}, content_type="application/json")
    assert hq.get(f"{TEMPLATES}/{g}").json()["current_version"]["default_priority"] == "B"
    r = hq.post(f"{TEMPLATES}/{g}/revert", {}, content_type="application/json")
    assert r.status_code == 200, r.json()
    assert r.json()["current_version"]["number"] == 4
    assert r.json()["current_version"]["default_priority"] == "A"


def test_reverting_a_first_version_is_409(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    r = client_as(admin).post(
        f"{TEMPLATES}/{repair_template.pk}/revert", {}, content_type="application/json"
    )
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "no_previous"
    assert TemplateVersion.objects.filter(template=repair_template).count() == 1


def test_reverting_an_override_restores_its_previous_own_fields(
    east_override: dict[str, Any], east_templates: Employee, client_as: Any
) -> None:
    manager = client_as(east_templates)
    east = east_override["id"]
    fields: dict[str, Any] = copy.deepcopy(COLD_CHAIN_FIELDS)
    fields["schema"]["properties"]["promo"] = {"type": "string", "maxLength": 20}
    fields["ui"]["promo"] = {"label": "华东促销码", "widget": "text", "order": 920}
    assert (
        manager.patch(
            f"{TEMPLATES}/{east}", {"own_fields": fields}, content_type="application/json"
        )
    ).status_code == 200
    r = manager.post(f"{TEMPLATES}/{east}/revert", {}, content_type="application/json")
    assert r.status_code == 200, r.json()
    version = r.json()["current_version"]
    assert version["number"] == 3
    assert version["own_fields"] == east_override["current_version"]["own_fields"]
    assert version["form"] == east_override["current_version"]["form"]
    assert (
        manager.post(f"{TEMPLATES}/{east}/revert", {}, content_type="application/json")
    ).status_code == 200


def test_reverting_the_first_override_version_is_409(
    east_override: dict[str, Any], east_templates: Employee, client_as: Any
) -> None:
    r = client_as(east_templates).post(
        f"{TEMPLATES}/{east_override['id']}/revert", {}, content_type="application/json"
    )
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "no_previous"


# --- overrides follow the global template ----------------------------------------------------


def test_changing_the_global_template_rebuilds_every_override_keeping_its_fields(
    east_override: dict[str, Any],
    repair_template: TicketTemplate,
    admin: Employee,
    agent: Employee,
    org: Org,
    client_as: Any,
) -> None:
    from jingwei.org.scope import actor_for
    from jingwei.tickets.services.templates import override_create

    south = override_create(
        actor=actor_for(admin),
        template_id=repair_template.pk,
        region_id=org.south.pk,
        own_fields=own("typhoon_level", "台风等级"),
    )
    hq = client_as(admin)
    g = repair_template.pk
    form = with_field(current_form(hq, g), "campaign_code", CAMPAIGN_FIELD)
    r = hq.patch(f"{TEMPLATES}/{g}", {"form": form}, content_type="application/json")
    assert r.status_code == 200, r.json()
    global_v2 = r.json()["current_version"]

    for override_id, own_key in (
        (east_override["id"], "cold_chain_tracking"),
        (south.pk, "typhoon_level"),
    ):
        version = hq.get(f"{TEMPLATES}/{override_id}").json()["current_version"]
        assert version["number"] == 2
        assert version["base_version_id"] == global_v2["id"]
        props = version["form"]["schema"]["properties"]
        assert {"campaign_code", own_key} <= set(props)
        assert set(props) == set(global_v2["form"]["schema"]["properties"]) | {own_key}

    # A pudong ticket now asks both the new global field and 华东's own field.
    t = ticket_in(
        client_as(agent),
        org.pudong.pk,
        repair(org, campaign_code="SALE1111", cold_chain_tracking="SF1"),
    )
    assert t.status_code == 201, t.json()
    assert t.json()["template_id"] == east_override["id"]
    assert t.json()["template_version"] == 2


def test_reverting_the_global_template_rebuilds_the_overrides_too(
    east_override: dict[str, Any], repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    g = repair_template.pk
    form = with_field(current_form(hq, g), "campaign_code", CAMPAIGN_FIELD)
    hq.patch(f"{TEMPLATES}/{g}", {"form": form}, content_type="application/json")
    reverted = hq.post(f"{TEMPLATES}/{g}/revert", {}, content_type="application/json").json()
    east = hq.get(f"{TEMPLATES}/{east_override['id']}").json()["current_version"]
    assert east["number"] == 3
    assert east["base_version_id"] == reverted["current_version"]["id"]
    assert east["form"] == east_override["current_version"]["form"]


def test_a_global_field_clashing_with_an_override_field_is_refused_and_nothing_changes(
    east_override: dict[str, Any], repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    g = repair_template.pk
    form = with_field(
        current_form(hq, g),
        "cold_chain_tracking",
        {"schema": {"type": "string"}, "ui": {"label": "冷链（总部）", "widget": "text"}},
    )
    r = hq.patch(f"{TEMPLATES}/{g}", {"form": form}, content_type="application/json")
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "override_conflict"
    assert hq.get(f"{TEMPLATES}/{g}").json()["current_version"]["number"] == 1
    assert hq.get(f"{TEMPLATES}/{east_override['id']}").json()["current_version"]["number"] == 1


def test_a_global_change_is_applied_for_every_region_even_when_made_by_the_service(
    east_override: dict[str, Any], repair_template: TicketTemplate, admin: Employee
) -> None:
    from jingwei.org.scope import actor_for

    current = repair_template.versions.get(number=1)
    template_update(
        actor=actor_for(admin),
        template_id=repair_template.pk,
        changes={"flow_key": "after_sales", "default_priority": "A"},
    )
    override = TicketTemplate.objects.get(pk=east_override["id"])
    assert override.current_version is not None
    assert override.current_version.default_priority == "A"
    assert override.current_version.own_fields == COLD_CHAIN_FIELDS
    assert override.current_version.base_version_id != current.pk


# --- bad definitions -------------------------------------------------------------------------


def _bad_forms(base: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(form, the path the error must name)."""
    bad_key = copy.deepcopy(base)
    bad_key["schema"]["properties"]["Bad-Key"] = {"type": "string"}
    bad_key["ui"]["Bad-Key"] = {"label": "坏字段", "widget": "text"}
    bad_keyword = copy.deepcopy(base)
    bad_keyword["schema"]["properties"]["fault"]["allOf"] = []
    bad_widget = copy.deepcopy(base)
    bad_widget["ui"]["fault"]["widget"] = "slider"
    bad_required = copy.deepcopy(base)
    bad_required["schema"]["required"].append("nowhere")
    return [
        (bad_key, "form.schema.properties.Bad-Key"),
        (bad_keyword, "form.schema.properties.fault.allOf"),
        (bad_widget, "form.ui.fault.widget"),
        (bad_required, f"form.schema.required.{len(bad_required['schema']['required']) - 1}"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_bad_form_is_refused_naming_the_path(
    case: int, repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    form, path = _bad_forms(current_form(hq, repair_template.pk))[case]
    created = hq.post(
        TEMPLATES,
        {"key": "repair_v2", "name": "报修二", "form": form, "flow_key": "after_sales"},
        content_type="application/json",
    )
    assert created.status_code == 422, created.json()
    assert (created.json()["code"], created.json()["field"]) == ("invalid_form", path)
    assert not TicketTemplate.objects.filter(key="repair_v2").exists()

    changed = hq.patch(
        f"{TEMPLATES}/{repair_template.pk}", {"form": form}, content_type="application/json"
    )
    assert changed.status_code == 422, changed.json()
    assert (changed.json()["code"], changed.json()["field"]) == ("invalid_form", path)
    assert TemplateVersion.objects.filter(template=repair_template).count() == 1


def test_bad_own_fields_are_refused_naming_the_path(
    repair_template: TicketTemplate, org: Org, east_templates: Employee, client_as: Any
) -> None:
    fields = own("cold_chain_tracking", "冷链物流追踪号", maxLength="四十")
    r = client_as(east_templates).post(
        f"{TEMPLATES}/{repair_template.pk}/overrides",
        {"region_id": org.east.pk, "own_fields": fields},
        content_type="application/json",
    )
    assert r.status_code == 422, r.json()
    assert r.json()["field"].startswith("own_fields.schema.properties.cold_chain_tracking")


def test_an_unknown_flow_is_refused(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    form = current_form(hq, repair_template.pk)
    created = hq.post(
        TEMPLATES,
        {"key": "repair_v2", "name": "报修二", "form": form, "flow_key": "no_such_flow"},
        content_type="application/json",
    )
    assert created.status_code == 422, created.json()
    assert (created.json()["code"], created.json()["field"]) == ("unknown_flow", "flow_key")
    changed = hq.patch(
        f"{TEMPLATES}/{repair_template.pk}",
        {"flow_key": "no_such_flow"},
        content_type="application/json",
    )
    assert changed.status_code == 422, changed.json()
    assert changed.json()["code"] == "unknown_flow"
    assert TemplateVersion.objects.filter(template=repair_template).count() == 1


def test_another_tenants_flow_is_an_unknown_flow(
    repair_template: TicketTemplate, other_admin: Employee, client_as: Any
) -> None:
    # Our tenant has the shipped flows; the other tenant has none.
    r = client_as(other_admin).post(
        TEMPLATES,
        {
            "key": "repair",
            "name": "报修",
            "form": repair_template.current_version.form if repair_template.current_version else {},
            "flow_key": "after_sales",
        },
        content_type="application/json",
    )
    assert r.status_code == 422, r.json()
    assert r.json()["code"] == "unknown_flow"


def test_hq_creates_a_global_template_and_a_taken_key_is_409(
    repair_template: TicketTemplate, admin: Employee, agent: Employee, org: Org, client_as: Any
) -> None:
    hq = client_as(admin)
    form = current_form(hq, repair_template.pk)
    payload = {
        "key": "install",
        "name": "安装预约",
        "category": "售后",
        "form": form,
        "flow_key": "after_sales",
        "default_priority": "C",
    }
    r = hq.post(TEMPLATES, payload, content_type="application/json")
    assert r.status_code == 201, r.json()
    assert (r.json()["region_id"], r.json()["current_version"]["number"]) == (None, 1)
    again = hq.post(TEMPLATES, payload, content_type="application/json")
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["field"]) == ("key_taken", "key")

    t = client_as(agent).post(
        "/api/tickets",
        {"template": "install", "region_id": org.pudong.pk, "answers": consult()},
        content_type="application/json",
    )
    assert t.status_code == 201, t.json()
    assert t.json()["priority"] == "C"
    assert Ticket.objects.get(pk=t.json()["id"]).template.key == "install"


# --- the public form switch -------------------------------------------------------------------


def test_the_public_form_opens_with_a_new_link_and_closes(
    repair_template: TicketTemplate, admin: Employee, client_as: Any
) -> None:
    hq = client_as(admin)
    url = f"{TEMPLATES}/{repair_template.pk}/public-form"
    first = hq.post(url, {"enabled": True}, content_type="application/json").json()
    second = hq.post(url, {"enabled": True}, content_type="application/json").json()
    assert first["public_form"] and second["public_form"]
    assert first["public_url"] != second["public_url"]
    token = second["public_url"].rsplit("/", 1)[1]
    assert len(token) >= 20
    closed = hq.post(url, {"enabled": False}, content_type="application/json").json()
    assert (closed["public_form"], closed["public_url"]) == (False, None)
    assert hq.get(f"{TEMPLATES}/{repair_template.pk}/qr.png").status_code == 409
