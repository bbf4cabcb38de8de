"""Ticket templates: global (HQ) templates, regional overrides, immutable versions and revert.

Who edits what: a global template needs `ticket.template_manage` for the whole company; a
region's override needs it over that region (a regional manager's grant anchored at 华东 reaches
华东 and the regions below). Agents only fill in.

An override adds fields to the global form (its `own_fields`, same JSON shape as a form, with
keys the global form does not use). Each version stores the effective form, so a ticket's version
tells exactly what was asked; when the global template changes, every override gets a new version
built on it, keeping its own fields.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from jingwei.flows.services import latest_version
from jingwei.org.models import Region
from jingwei.org.scope import Actor

from ..forms import check_definition
from ..models import Priority, TemplateVersion, TicketTemplate
from .common import CREATE, TEMPLATES, VIEW, region_path

VERSIONED = ("form", "own_fields", "flow_key", "default_priority")


def _check_form(form: Any, field: str) -> dict[str, Any]:
    try:
        return dict(check_definition(form).data)
    except Invalid as exc:
        raise Invalid(exc.message, code=exc.code, field=f"{field}.{exc.field}") from None


def _check_flow(tenant_id: int, flow_key: str) -> None:
    try:
        latest_version(tenant_id=tenant_id, key=flow_key)
    except NotFound:
        raise Invalid(
            f"流程 {flow_key} 不存在或没有已发布的版本", code="unknown_flow", field="flow_key"
        ) from None


def _check_priority(value: str) -> None:
    if value not in Priority.values:
        raise Invalid("默认优先级应为 S、A、B 或 C", code="invalid", field="default_priority")


def merged_form(base_form: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The global form with a region's own fields added (after the global ones unless their
    `order` says otherwise). A key the global form already has is refused: an override adds, it
    never changes what HQ asks."""
    if not own:
        return dict(base_form)
    if not isinstance(own, Mapping):
        raise Invalid("本区域字段应为对象", code="invalid", field="own_fields")
    schema = own.get("schema") or {}
    ui = own.get("ui") or {}
    if not isinstance(schema, Mapping) or not isinstance(ui, Mapping):
        raise Invalid("本区域字段应含 schema 与 ui", code="invalid", field="own_fields")
    unknown = set(own) - {"schema", "ui"}
    if unknown:
        raise Invalid(
            f"本区域字段不认识的键：{', '.join(sorted(map(str, unknown)))}",
            code="invalid",
            field="own_fields",
        )
    props = schema.get("properties") or {}
    base_schema = base_form["schema"]
    taken = sorted(set(props) & set(base_schema.get("properties", {})))
    if taken:
        raise Conflict(
            f"字段 {taken[0]} 已在总部模板中，区域只能增加新字段",
            code="field_in_base",
            field=f"own_fields.schema.properties.{taken[0]}",
        )
    # Nor through its ui (relabel) or its required list (make an optional HQ field required).
    base_keys = set(base_schema.get("properties", {}))
    relabelled = sorted(set(ui) & base_keys)
    if relabelled:
        raise Conflict(
            f"字段 {relabelled[0]} 已在总部模板中，区域不能修改它的展示",
            code="field_in_base",
            field=f"own_fields.ui.{relabelled[0]}",
        )
    own_required = schema.get("required") or []
    for i, key in enumerate(own_required if isinstance(own_required, list) else []):
        if key in base_keys:
            raise Conflict(
                f"字段 {key} 已在总部模板中，区域不能改变它是否必填",
                code="field_in_base",
                field=f"own_fields.schema.required.{i}",
            )
    return {
        "schema": {
            **base_schema,
            "properties": {**base_schema.get("properties", {}), **props},
            "required": [*base_schema.get("required", []), *(schema.get("required") or [])],
        },
        "ui": {**base_form.get("ui", {}), **ui},
    }


def _new_version(
    actor: Actor | None,
    template: TicketTemplate,
    *,
    form: dict[str, Any],
    own_fields: dict[str, Any],
    flow_key: str,
    default_priority: str,
    base_version: TemplateVersion | None,
    note: str,
) -> TemplateVersion:
    number = (
        template.versions.order_by("-number").values_list("number", flat=True).first() or 0
    ) + 1
    version = TemplateVersion.objects.create(
        tenant_id=template.tenant_id,
        template=template,
        number=number,
        form=form,
        own_fields=own_fields,
        flow_key=flow_key,
        default_priority=default_priority,
        base_version=base_version,
        note=note[:200],
        created_by_id=actor.employee_id if actor else None,
        created_at=timezone.now(),
    )
    template.current_version = version
    template.save(update_fields=["current_version", "updated_at"])
    return version


def _rebuild_overrides(actor: Actor | None, template: TicketTemplate, note: str) -> None:
    """Give every override of a global template a version built on its new current version."""
    base = template.current_version
    assert base is not None
    for override in TicketTemplate.objects.select_for_update().filter(base=template):
        current = override.current_version
        own = current.own_fields if current is not None else {}
        try:
            form = _check_form(merged_form(base.form, own), "form")
        except DomainError as exc:
            raise Conflict(
                f"区域模板“{override.name}”的字段与新版本冲突：{exc.message}",
                code="override_conflict",
                field="form",
            ) from None
        _new_version(
            actor,
            override,
            form=form,
            own_fields=own,
            flow_key=current.flow_key if current is not None else base.flow_key,
            default_priority=base.default_priority,
            base_version=base,
            note=f"总部模板 v{base.number}：{note}"[:200],
        )


def may_edit(actor: Actor, template: TicketTemplate) -> bool:
    if template.region_id is None:
        return any(g.scope == "tenant" for g in actor.grants_of(TEMPLATES))
    region = template.region
    assert region is not None
    return actor.reaches(
        TEMPLATES, scope="region", department_path=None, region_path=region.path, until=None
    )


def _editable(actor: Actor, template_id: int) -> TicketTemplate:
    actor.require(TEMPLATES)
    template = (
        TicketTemplate.objects.select_for_update(of=("self",))
        .select_related("region", "current_version")
        .filter(tenant_id=actor.tenant_id, pk=template_id)
        .first()
    )
    if template is None:
        raise NotFound("工单模板不存在", field="template_id")
    if not may_edit(actor, template):
        raise Forbidden(
            "总部模板需要全公司范围的模板管理权限；区域模板需要该区域的模板管理权限",
            code="out_of_scope",
        )
    return template


def template_list(*, actor: Actor) -> Any:
    """Templates are what people fill in: anyone who may create or see tickets sees them all."""
    if not (actor.has_perm(CREATE) or actor.has_perm(VIEW) or actor.has_perm(TEMPLATES)):
        actor.require(VIEW)
    return TicketTemplate.objects.filter(tenant_id=actor.tenant_id).select_related(
        "current_version", "region"
    )


def template_get(*, actor: Actor, template_id: int) -> TicketTemplate:
    found = template_list(actor=actor).filter(pk=template_id).first()
    if found is None:
        raise NotFound("工单模板不存在", field="template_id")
    return found


def template_create(
    *,
    actor: Actor,
    key: str,
    name: str,
    form: Any,
    flow_key: str,
    category: str = "",
    description: str = "",
    default_priority: str = "B",
) -> TicketTemplate:
    """A global template and its first version. Company-wide template rights."""
    actor.require_tenant_wide(TEMPLATES)
    return global_template_create(
        tenant_id=actor.tenant_id,
        actor=actor,
        key=key,
        name=name,
        form=form,
        flow_key=flow_key,
        category=category,
        description=description,
        default_priority=default_priority,
    )


def global_template_create(
    *,
    tenant_id: int,
    actor: Actor | None,
    key: str,
    name: str,
    form: Any,
    flow_key: str,
    category: str = "",
    description: str = "",
    default_priority: str = "B",
) -> TicketTemplate:
    """`template_create` without the permission check: `actor` None is the system (the shipped
    templates)."""
    checked = _check_form(form, "form")
    _check_priority(default_priority)
    with transaction.atomic(durable=True):
        _check_flow(tenant_id, flow_key)
        try:
            with transaction.atomic():
                template = TicketTemplate.objects.create(
                    tenant_id=tenant_id,
                    key=key,
                    name=name,
                    category=category,
                    description=description,
                )
        except IntegrityError:
            raise Conflict("模板标识已存在", code="key_taken", field="key") from None
        version = _new_version(
            actor,
            template,
            form=checked,
            own_fields={},
            flow_key=flow_key,
            default_priority=default_priority,
            base_version=None,
            note="创建",
        )
        audit_record(
            actor=actor,
            tenant_id=tenant_id,
            action="tickets.template.created",
            subject=template,
            after={"key": key, "name": name, "flow_key": flow_key, "version": version.number},
        )
        return template


def override_create(
    *,
    actor: Actor,
    template_id: int,
    region_id: int,
    own_fields: Any,
    name: str = "",
    note: str = "",
) -> TicketTemplate:
    """A region's override of a global template, adding `own_fields` (e.g. 华东 adds 冷链物流追踪)."""
    actor.require(TEMPLATES)
    with transaction.atomic(durable=True):
        base = (
            # of=self: PostgreSQL refuses FOR UPDATE on the nullable side of the outer join.
            TicketTemplate.objects.select_for_update(of=("self",))
            .select_related("current_version")
            .filter(tenant_id=actor.tenant_id, pk=template_id)
            .first()
        )
        if base is None:
            raise NotFound("工单模板不存在", field="template_id")
        if base.region_id is not None:
            raise Invalid("只能在总部模板上建立区域模板", code="not_global", field="template_id")
        region = Region.objects.filter(tenant_id=actor.tenant_id, pk=region_id).first()
        if region is None:
            raise Invalid("区域不存在", code="invalid_reference", field="region_id")
        if not actor.reaches(
            TEMPLATES, scope="region", department_path=None, region_path=region.path, until=None
        ):
            raise Forbidden("只能为自己负责的区域建立区域模板", code="out_of_scope")
        current = base.current_version
        assert current is not None
        form = _check_form(merged_form(current.form, own_fields or {}), "own_fields")
        try:
            with transaction.atomic():
                override = TicketTemplate.objects.create(
                    tenant_id=actor.tenant_id,
                    key=base.key,
                    name=name or f"{base.name}（{region.name}）",
                    category=base.category,
                    description=base.description,
                    region=region,
                    base=base,
                )
        except IntegrityError:
            raise Conflict("该区域已有这个模板的区域版本", code="override_exists") from None
        version = _new_version(
            actor,
            override,
            form=form,
            own_fields=dict(own_fields or {}),
            flow_key=current.flow_key,
            default_priority=current.default_priority,
            base_version=current,
            note=note or "建立区域模板",
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.template.override_created",
            subject=override,
            after={"base": base.pk, "region": region.pk, "version": version.number},
        )
        return override


def template_update(
    *, actor: Actor, template_id: int, changes: Mapping[str, Any], note: str = ""
) -> TicketTemplate:
    """Rename or describe a template, or change what it asks (form, own fields, flow, default
    priority): the latter makes a new version; tickets already made keep theirs."""
    with transaction.atomic(durable=True):
        template = _editable(actor, template_id)
        current = template.current_version
        assert current is not None
        for attr in ("name", "category", "description", "is_active"):
            if attr in changes and changes[attr] is not None:
                setattr(template, attr, changes[attr])
        template.save()
        wanted = {k: changes[k] for k in VERSIONED if changes.get(k) is not None}
        if template.region_id is not None and "form" in wanted:
            raise Invalid(
                "区域模板只能增加本区域字段（own_fields），总部字段请在总部模板中修改",
                code="override_form",
                field="form",
            )
        if template.region_id is None and "own_fields" in wanted:
            raise Invalid("总部模板没有本区域字段", code="invalid", field="own_fields")
        if wanted:
            if "default_priority" in wanted:
                _check_priority(wanted["default_priority"])
            flow_key = wanted.get("flow_key", current.flow_key)
            if flow_key != current.flow_key:
                _check_flow(actor.tenant_id, flow_key)
            if template.region_id is None:
                form = _check_form(wanted.get("form", current.form), "form")
                own: dict[str, Any] = {}
                base_version = None
            else:
                base_template = template.base
                assert base_template is not None and base_template.current_version is not None
                base_version = base_template.current_version
                own = dict(wanted.get("own_fields", current.own_fields))
                form = _check_form(merged_form(base_version.form, own), "own_fields")
            version = _new_version(
                actor,
                template,
                form=form,
                own_fields=own,
                flow_key=flow_key,
                default_priority=wanted.get("default_priority", current.default_priority),
                base_version=base_version,
                note=note or "修改",
            )
            if template.region_id is None:
                _rebuild_overrides(actor, template, note or "修改")
            changes_made = {"version": version.number, "fields": sorted(wanted)}
        else:
            changes_made = {}
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.template.updated",
            subject=template,
            after={**{k: changes[k] for k in changes if k not in VERSIONED}, **changes_made},
        )
        return template


def template_revert(*, actor: Actor, template_id: int, note: str = "") -> TicketTemplate:
    """Undo the last change in one call (a campaign's temporary field, say): a new version with
    the content of the one before the current. History stays; tickets keep their versions."""
    with transaction.atomic(durable=True):
        template = _editable(actor, template_id)
        current = template.current_version
        assert current is not None
        previous = template.versions.filter(number__lt=current.number).order_by("-number").first()
        if previous is None:
            raise Conflict("这是模板的第一个版本，没有可以恢复的上一版本", code="no_previous")
        if template.region_id is None:
            form = previous.form
            base_version = None
        else:
            base_template = template.base
            assert base_template is not None and base_template.current_version is not None
            base_version = base_template.current_version
            form = _check_form(merged_form(base_version.form, previous.own_fields), "own_fields")
        version = _new_version(
            actor,
            template,
            form=form,
            own_fields=previous.own_fields,
            flow_key=previous.flow_key,
            default_priority=previous.default_priority,
            base_version=base_version,
            note=note or f"恢复到 v{previous.number}",
        )
        if template.region_id is None:
            _rebuild_overrides(actor, template, f"恢复到 v{previous.number}")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.template.reverted",
            subject=template,
            data={"from": current.number, "to_content_of": previous.number, "new": version.number},
        )
        return template


def template_publish_form(*, actor: Actor, template_id: int, enabled: bool) -> TicketTemplate:
    """Open (a new unguessable link) or close the template's public form."""
    with transaction.atomic(durable=True):
        template = _editable(actor, template_id)
        template.public_token = secrets.token_urlsafe(18) if enabled else ""
        template.save(update_fields=["public_token", "updated_at"])
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.template.public_form",
            subject=template,
            after={"enabled": enabled},
        )
        return template


def template_for(*, tenant_id: int, key: str, region_id: int | None) -> TicketTemplate:
    """The template a ticket of `key` made in `region_id` uses: the override of the nearest
    region up the tree, else the global one."""
    candidates = {
        t.region_id: t
        for t in TicketTemplate.objects.filter(
            tenant_id=tenant_id, key=key, is_active=True
        ).select_related("current_version")
    }
    if region_id is not None and len(candidates) > 1:
        for ancestor in reversed(region_path(tenant_id, region_id) or []):
            if ancestor in candidates:
                return candidates[ancestor]
    if None not in candidates:
        raise NotFound(f"工单模板 {key} 不存在或已停用", field="template")
    return candidates[None]
