"""The engine's own service-task actions. Domain apps register theirs (reserve_parts,
consume_parts, post_settlement_line, webhook…) with `engine.action` when they land."""

from __future__ import annotations

from typing import Any

from . import hooks
from .assignment import role_holders
from .engine import FlowError, action
from .expressions import ExpressionError, compile_expression
from .models import Instance


@action("set_field")
def set_field(instance: Instance, node: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """params: field, and either value (taken as written, e.g. `archived`) or expression (a CEL
    expression over the case data, e.g. `amount * 2`)."""
    name = str(params.get("field") or "")
    if not name:
        raise FlowError("set_field 缺少 field 参数", code="bad_action")
    if "expression" not in params:
        return {name: params.get("value", "")}
    try:
        value = compile_expression(str(params["expression"])).evaluate(instance.data)
    except ExpressionError as exc:
        raise FlowError(f"set_field 的表达式无法计算：{exc}", code="bad_action") from exc
    return {name: value}


@action("notify")
def notify(instance: Instance, node: dict[str, Any], params: dict[str, Any]) -> None:
    """params: to (owner | role:<name>), title, body."""
    to = str(params.get("to") or "owner")
    people = (
        role_holders(instance, to[5:], "region") if to.startswith("role:") else [instance.owner_id]
    )
    hooks.alert(
        tenant_id=instance.tenant_id,
        region_id=instance.region_id,
        recipient_ids=people,
        kind="flows.notify",
        title=str(params.get("title") or node.get("name") or "流程通知"),
        body=str(params.get("body") or ""),
        severity="info",
        data={"instance_id": instance.pk, "business_key": instance.business_key},
    )
