"""The executor: moves tokens through a compiled spec, one transition per call, inside the caller's
transaction. Services (flows.services) open the transaction and lock the rows; nothing here does.

The spec (see flows.spec) is plain JSON kept on the immutable ProcessVersion:
    {"process_id", "name",
     "nodes": {id: {"type", "name", "incoming": [flow ids], "outgoing": [flow ids], ...settings}},
     "flows": {id: {"source", "target", "condition": str | None, "default": bool}},
     "boundaries": {activity id: [boundary event ids]}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone

from jingwei.core.errors import DomainError
from jingwei.core.timers import timer_cancel, timer_schedule

from . import assignment, sla
from .expressions import ExpressionError, evaluate_condition
from .models import (
    FlowEvent,
    Instance,
    InstanceStatus,
    ProcessVersion,
    Task,
    TaskCandidate,
    TaskStatus,
    Token,
    TokenStatus,
)

TIMER_KIND = "flows.timer"  # intermediate timers and boundary timers
MAX_STEPS = 1000  # transitions one call may make: a loop of automatic steps is an error, not a hang

Action = Callable[[Instance, dict[str, Any], dict[str, Any]], dict[str, Any] | None]
_actions: dict[str, Action] = {}


class FlowError(DomainError):
    """The flow cannot go on as drawn (no condition matched, a missing sub-flow…)."""

    default_code = "flow_error"


def action(name: str) -> Callable[[Action], Action]:
    """Register a service-task action. It gets (instance, node, params) and may return data updates."""

    def register(fn: Action) -> Action:
        _actions[name] = fn
        return fn

    return register


def known_actions() -> set[str]:
    return set(_actions)


def event(
    instance: Instance,
    kind: str,
    node_id: str = "",
    *,
    task: Task | None = None,
    actor_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> FlowEvent:
    return FlowEvent.objects.create(
        tenant_id=instance.tenant_id,
        instance=instance,
        at=timezone.now(),
        kind=kind,
        node_id=node_id,
        task=task,
        actor_id=actor_id,
        data=data or {},
    )


def spec_of(instance: Instance) -> dict[str, Any]:
    spec: dict[str, Any] = instance.version.spec
    return spec


def start(
    version: ProcessVersion,
    *,
    data: dict[str, Any],
    business_key: str = "",
    region_id: int | None = None,
    department_id: int | None = None,
    owner_id: int | None = None,
    actor_id: int | None = None,
    parent_token: Token | None = None,
) -> Instance:
    spec = version.spec
    starts = [nid for nid, n in spec["nodes"].items() if n["type"] == "startEvent"]
    if len(starts) != 1:
        raise FlowError("流程必须恰好有一个开始事件", code="no_start")
    instance = Instance.objects.create(
        tenant_id=version.tenant_id,
        version=version,
        business_key=business_key,
        data=data,
        region_id=region_id,
        department_id=department_id,
        owner_id=owner_id,
        parent_token=parent_token,
        started_at=timezone.now(),
    )
    event(instance, "instance.started", actor_id=actor_id, data={"version": version.number})
    token = _new_token(instance, starts[0], via="")
    run(instance, [token], actor_id=actor_id)
    return instance


def _new_token(instance: Instance, node_id: str, via: str) -> Token:
    return Token.objects.create(
        tenant_id=instance.tenant_id,
        instance=instance,
        node_id=node_id,
        via_flow=via,
        arrived_at=timezone.now(),
    )


def _leave(token: Token, status: str = TokenStatus.DONE) -> None:
    token.status = status
    token.left_at = timezone.now()
    token.save(update_fields=["status", "left_at"])


def run(instance: Instance, tokens: list[Token], *, actor_id: int | None = None) -> None:
    """Advance the given tokens until each waits (task, timer, message, sub-flow, join) or ends."""
    pending = list(tokens)
    steps = 0
    while pending:
        steps += 1
        if steps > MAX_STEPS:
            raise FlowError("流程在自动步骤中循环，已停止", code="flow_loop")
        token = pending.pop(0)
        pending.extend(_enter(instance, token, actor_id))
    _maybe_finish(instance, actor_id)


def _enter(instance: Instance, token: Token, actor_id: int | None) -> list[Token]:
    """Handle a token that has just arrived at its node. Returns the tokens that move on at once."""
    node = spec_of(instance)["nodes"][token.node_id]
    kind = node["type"]
    event(instance, "node.entered", token.node_id, actor_id=actor_id, data={"type": kind})
    if kind == "startEvent":
        return _follow(instance, token, node["outgoing"])
    if kind == "endEvent":
        _leave(token)
        event(instance, "node.left", token.node_id)
        return []
    if kind == "userTask":
        _create_task(instance, token, node)
        _arm_boundaries(instance, token)
        return []
    if kind == "serviceTask":
        _run_action(instance, token, node)
        return _follow(instance, token, node["outgoing"])
    if kind == "exclusiveGateway":
        return _follow(instance, token, [_choose(instance, node)])
    if kind == "parallelGateway":
        return _parallel(instance, token, node)
    if kind == "intermediateCatchEvent":
        if node.get("timer"):
            _schedule_timer(instance, token, node["timer"], key=f"token:{token.pk}")
        return []  # a message catch waits for flows.services.instance_message
    if kind == "callActivity":
        _arm_boundaries(instance, token)
        _call(instance, token, node, actor_id)
        return []
    raise FlowError(f"不支持的节点类型 {kind}（{token.node_id}）", code="unsupported_node")


def _follow(instance: Instance, token: Token, flow_ids: list[str]) -> list[Token]:
    """Leave the token's node along the given flows: one new token per flow."""
    _leave(token)
    event(instance, "node.left", token.node_id)
    flows = spec_of(instance)["flows"]
    return [_new_token(instance, flows[f]["target"], via=f) for f in flow_ids]


def _choose(instance: Instance, node: dict[str, Any]) -> str:
    flows = spec_of(instance)["flows"]
    default = None
    for fid in node["outgoing"]:
        flow = flows[fid]
        if flow.get("default"):
            default = fid
            continue
        condition = flow.get("condition")
        if not condition:
            if len(node["outgoing"]) == 1:
                return fid
            continue
        try:
            if evaluate_condition(condition, instance.data):
                return fid
        except ExpressionError as exc:
            raise FlowError(f"条件 {condition!r} 无法计算：{exc}", code="bad_condition") from exc
    if default is None:
        raise FlowError(
            f"网关 {node.get('name') or ''} 没有满足的条件，也没有默认路径", code="no_path"
        )
    return default


def _parallel(instance: Instance, token: Token, node: dict[str, Any]) -> list[Token]:
    incoming = node["incoming"]
    if len(incoming) > 1:
        # A join: wait until a token has arrived along every incoming flow, then merge them.
        waiting = list(
            Token.objects.filter(
                instance=instance, node_id=token.node_id, status=TokenStatus.ACTIVE
            )
            .select_for_update()
            .order_by("id")
        )
        arrived = {t.via_flow for t in waiting}
        if not set(incoming) <= arrived:
            event(instance, "join.waiting", token.node_id, data={"arrived": sorted(arrived)})
            return []
        used: set[str] = set()
        for t in waiting:
            if t.pk != token.pk and t.via_flow not in used:
                used.add(t.via_flow)
                _leave(t)
        used.add(token.via_flow)
    return _follow(instance, token, node["outgoing"])


def _run_action(instance: Instance, token: Token, node: dict[str, Any]) -> None:
    spec_action = node.get("action") or {}
    name = spec_action.get("name", "")
    fn = _actions.get(name)
    if fn is None:
        raise FlowError(f"未知的自动动作 {name!r}（{token.node_id}）", code="unknown_action")
    updates = fn(instance, node, dict(spec_action.get("params") or {}))
    if updates:
        instance.data = {**instance.data, **updates}
        instance.save(update_fields=["data"])
    event(instance, "action.ran", token.node_id, data={"action": name, "updates": updates or {}})


def _create_task(instance: Instance, token: Token, node: dict[str, Any]) -> Task:
    now = timezone.now()
    try:
        pick = assignment.pick(instance, node.get("assignments") or [], node_id=token.node_id)
    except ExpressionError as exc:
        raise FlowError(f"分配规则的条件无法计算：{exc}", code="bad_condition") from exc
    task = Task.objects.create(
        tenant_id=instance.tenant_id,
        instance=instance,
        token=token,
        node_id=token.node_id,
        name=node.get("name") or token.node_id,
        form_key=node.get("form_key") or "",
        assignee_id=pick.assignee_id,
        created_at=now,
    )
    TaskCandidate.objects.bulk_create(
        TaskCandidate(tenant_id=instance.tenant_id, task=task, employee_id=pk)
        for pk in pick.candidates
    )
    event(
        instance,
        "task.created",
        token.node_id,
        task=task,
        data={"assignee_id": pick.assignee_id, "candidates": pick.candidates, "rule": pick.rule},
    )
    sla.arm(instance, task, node)
    return task


def _arm_boundaries(instance: Instance, token: Token) -> None:
    spec = spec_of(instance)
    for boundary_id in spec.get("boundaries", {}).get(token.node_id, []):
        boundary = spec["nodes"][boundary_id]
        if boundary.get("timer"):
            _schedule_timer(
                instance,
                token,
                boundary["timer"],
                key=f"token:{token.pk}:{boundary_id}",
                boundary_id=boundary_id,
            )


def _schedule_timer(
    instance: Instance,
    token: Token,
    timer: dict[str, Any],
    *,
    key: str,
    boundary_id: str | None = None,
) -> None:
    due = sla.timer_due(instance, timer)
    timer_schedule(
        tenant_id=instance.tenant_id,
        kind=TIMER_KIND,
        key=key,
        due_at=due,
        payload={"instance_id": instance.pk, "token_id": token.pk, "boundary_id": boundary_id},
    )


def _call(instance: Instance, token: Token, node: dict[str, Any], actor_id: int | None) -> None:
    called = node.get("called_element") or ""
    version = (
        ProcessVersion.objects.filter(tenant_id=instance.tenant_id, definition__key=called)
        .order_by("-number")
        .first()
    )
    if version is None:
        raise FlowError(f"调用的子流程 {called!r} 没有已发布的版本", code="unknown_subflow")
    sub = start(
        version,
        data=dict(instance.data),
        business_key=instance.business_key,
        region_id=instance.region_id,
        department_id=instance.department_id,
        owner_id=instance.owner_id,
        actor_id=actor_id,
        parent_token=token,
    )
    event(instance, "subflow.started", token.node_id, data={"instance_id": sub.pk})


def cancel_token(instance: Instance, token: Token, reason: str) -> None:
    """Stop whatever waits at this token: its open tasks, their SLA timers, its boundary timers."""
    for task in Task.objects.filter(token=token, status=TaskStatus.OPEN):
        task.status = TaskStatus.CANCELLED
        task.save(update_fields=["status"])
        sla.disarm(task)
        event(instance, "task.cancelled", token.node_id, task=task, data={"reason": reason})
    disarm_boundaries(instance, token)
    _leave(token, TokenStatus.CANCELLED)


def disarm_boundaries(instance: Instance, token: Token) -> None:
    for boundary_id in spec_of(instance).get("boundaries", {}).get(token.node_id, []):
        timer_cancel(
            tenant_id=instance.tenant_id, kind=TIMER_KIND, key=f"token:{token.pk}:{boundary_id}"
        )


def move_on(instance: Instance, token: Token, *, actor_id: int | None) -> None:
    """The waiting token's node is done (task completed, timer fired, message arrived): go on."""
    disarm_boundaries(instance, token)
    node = spec_of(instance)["nodes"][token.node_id]
    run(instance, _follow(instance, token, node["outgoing"]), actor_id=actor_id)


def _maybe_finish(instance: Instance, actor_id: int | None) -> None:
    if instance.status != InstanceStatus.RUNNING:
        return
    if Token.objects.filter(instance=instance, status=TokenStatus.ACTIVE).exists():
        return
    instance.status = InstanceStatus.COMPLETED
    instance.ended_at = timezone.now()
    instance.save(update_fields=["status", "ended_at"])
    event(instance, "instance.completed", actor_id=actor_id)
    parent = instance.parent_token
    if parent is not None and parent.status == TokenStatus.ACTIVE:
        outer = parent.instance
        outer.data = {**outer.data, **instance.data}
        outer.save(update_fields=["data"])
        event(outer, "subflow.completed", parent.node_id, data={"instance_id": instance.pk})
        move_on(outer, parent, actor_id=actor_id)


def fire_timer(payload: dict[str, Any]) -> None:
    """Timer handler body for intermediate and boundary timers (see flows.timer_handlers)."""
    token = (
        Token.objects.select_for_update()
        .select_related("instance__version")
        .filter(pk=payload["token_id"], status=TokenStatus.ACTIVE)
        .first()
    )
    if token is None:
        return  # the token moved on meanwhile: the timer is moot
    instance = token.instance
    boundary_id = payload.get("boundary_id")
    if not boundary_id:
        event(instance, "timer.fired", token.node_id)
        move_on(instance, token, actor_id=None)
        return
    boundary = spec_of(instance)["nodes"][boundary_id]
    event(instance, "timer.fired", boundary_id, data={"attached_to": token.node_id})
    if boundary.get("cancel_activity", True):
        cancel_token(instance, token, reason=f"边界定时器 {boundary_id}")
    branch = _new_token(instance, boundary_id, via="")
    run(instance, _follow(instance, branch, boundary["outgoing"]))
