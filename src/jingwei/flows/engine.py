"""The executor: moves tokens through a compiled spec, one transition per call, inside the caller's
transaction. Services (flows.services) open the transaction and lock the rows; nothing here does.

Within one operation (`recording()`), the rows nobody refers to are written together at its end:
the event log, and the tokens that passed through a node without waiting (start, gateways,
service tasks, end). A token that waits (task, timer, message, sub-flow, join) is saved at once,
because tasks and timers point at it. So a task completion that walks through a gateway and two
service tasks costs a handful of statements, not one per row; all of it still commits together.

The spec (see flows.spec) is plain JSON kept on the immutable ProcessVersion:
    {"process_id", "name",
     "nodes": {id: {"type", "name", "incoming": [flow ids], "outgoing": [flow ids], ...settings}},
     "flows": {id: {"source", "target", "condition": str | None, "default": bool}},
     "boundaries": {activity id: [boundary event ids]}}
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.utils import timezone

from jingwei.core.errors import DomainError
from jingwei.core.timers import timer_cancel, timer_create, timer_schedule

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

# Whoever keeps a copy of where an instance stands (a ticket's stage) hears of these, once per
# operation, after its rows are written and inside its transaction.
Listener = Callable[[list[Instance]], None]
_listeners: list[Listener] = []
MOVES = frozenset({"node.entered", "instance.completed", "instance.cancelled", "task.cancelled"})


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


def listen(fn: Listener) -> Listener:
    """Register `fn(instances)`: called with the instances that moved (entered a node, ended or
    lost a task) at the end of each operation, in its transaction. The engine imports no domain
    app; a domain app registers here from its AppConfig.ready()."""
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


def _tell(instances: list[Instance]) -> None:
    for fn in _listeners:
        fn(instances)


class _Journal(threading.local):
    """What the current operation will write at its end (see the module docstring)."""

    depth = 0

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self.tokens: list[Token] = []
        self.changed: dict[int, Instance] = {}  # instances whose data changed, by id()
        self.moved: dict[int, Instance] = {}  # instances whose position changed, by id()


_journal = _Journal()


@contextmanager
def recording() -> Iterator[None]:
    """Collect events and passed-through tokens; write them in two INSERTs when the outermost
    recording ends without an error (inside the caller's transaction). Re-entrant."""
    journal = _journal
    journal.depth += 1
    try:
        yield
        if journal.depth == 1:
            _flush(journal)
    finally:
        journal.depth -= 1
        if journal.depth == 0:
            journal.events, journal.tokens, journal.changed, journal.moved = [], [], {}, {}


def _flush(journal: _Journal) -> None:
    tokens, journal.tokens = journal.tokens, []
    events, journal.events = journal.events, []
    changed, journal.changed = journal.changed, {}
    if tokens:
        Token.objects.bulk_create(tokens)
    if events:
        FlowEvent.objects.bulk_create(events)
    for instance in changed.values():
        instance.save(update_fields=["data"])
    moved, journal.moved = journal.moved, {}
    if moved and _listeners:
        _tell(list(moved.values()))


def update_data(instance: Instance, updates: dict[str, Any]) -> None:
    """Merge `updates` into the case data; written once when the operation ends."""
    instance.data = {**instance.data, **updates}
    if _journal.depth:
        _journal.changed[id(instance)] = instance
    else:
        instance.save(update_fields=["data"])


def event(
    instance: Instance,
    kind: str,
    node_id: str = "",
    *,
    task: Task | None = None,
    actor_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    row = FlowEvent(
        tenant_id=instance.tenant_id,
        instance=instance,
        at=timezone.now(),
        kind=kind,
        node_id=node_id,
        task=task,
        actor_id=actor_id,
        data=data or {},
    )
    if _journal.depth:
        _journal.events.append(row)
        if kind in MOVES:
            _journal.moved[instance.pk] = instance
    else:
        row.save()
        if kind in MOVES and _listeners:
            _tell([instance])


def lock_instance(**lookup: Any) -> Instance | None:
    """The instance matching `lookup`, its row locked, with its version. Every operation on an
    instance locks this row before any of its tokens or tasks, so two operations on one instance
    queue up instead of deadlocking."""
    found: Instance | None = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("version", "region", "department")
        .defer("version__xml")  # the drawing; the engine runs the compiled spec
        .order_by()
        .filter(**lookup)
        .first()
    )
    return found


def spec_of(instance: Instance) -> dict[str, Any]:
    # Callers load the version with the instance (select_related), so this reads no row.
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
    with recording():
        event(instance, "instance.started", actor_id=actor_id, data={"version": version.number})
        run(instance, [_new_token(instance, starts[0], via="")], actor_id=actor_id)
    return instance


def _new_token(instance: Instance, node_id: str, via: str) -> Token:
    """A token arriving at a node. Unsaved: it is written when it waits (`_wait`), or with the
    operation's journal once it has passed through."""
    return Token(
        tenant_id=instance.tenant_id,
        instance=instance,
        node_id=node_id,
        via_flow=via,
        arrived_at=timezone.now(),
    )


def _wait(token: Token) -> Token:
    if token.pk is None:
        token.save()
    return token


def _leave(token: Token, status: str = TokenStatus.DONE) -> None:
    token.status = status
    token.left_at = timezone.now()
    if token.pk is not None:
        token.save(update_fields=["status", "left_at"])
    elif _journal.depth:
        _journal.tokens.append(token)
    else:
        token.save()


def run(instance: Instance, tokens: list[Token], *, actor_id: int | None = None) -> None:
    """Advance the given tokens until each waits (task, timer, message, sub-flow, join) or ends."""
    nodes = spec_of(instance)["nodes"]
    pending = list(tokens)
    steps = 0
    ended = False
    with recording():
        while pending:
            steps += 1
            if steps > MAX_STEPS:
                raise FlowError("流程在自动步骤中循环，已停止", code="flow_loop")
            token = pending.pop(0)
            ended = ended or nodes[token.node_id]["type"] == "endEvent"
            pending.extend(_enter(instance, token, actor_id))
        if ended:
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
        return []
    if kind == "userTask":
        _wait(token)
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
        _wait(token)
        if node.get("timer"):
            _schedule_timer(instance, token, node["timer"], key=f"token:{token.pk}")
        else:  # a message catch waits for flows.services.instance_message
            sla.arm_wait(instance, token, node)
        return []
    if kind == "callActivity":
        _wait(token)
        _arm_boundaries(instance, token)
        sla.arm_wait(instance, token, node)
        _call(instance, token, node, actor_id)
        return []
    raise FlowError(f"不支持的节点类型 {kind}（{token.node_id}）", code="unsupported_node")


def _follow(instance: Instance, token: Token, flow_ids: list[str]) -> list[Token]:
    """Leave the token's node along the given flows: one new token per flow. (No event: the
    token row keeps when it left, and the next node's node.entered says where it went.)"""
    _leave(token)
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
        waiting = [
            t
            for t in Token.objects.filter(
                instance=instance, node_id=token.node_id, status=TokenStatus.ACTIVE
            )
            .select_for_update()
            .order_by("id")
            if t.pk != token.pk
        ]
        arrived = {t.via_flow for t in waiting} | {token.via_flow}
        if not set(incoming) <= arrived:
            _wait(token)
            event(instance, "join.waiting", token.node_id, data={"arrived": sorted(arrived)})
            return []
        used = {token.via_flow}
        for t in waiting:
            if t.via_flow not in used:
                used.add(t.via_flow)
                _leave(t)
    return _follow(instance, token, node["outgoing"])


def _run_action(instance: Instance, token: Token, node: dict[str, Any]) -> None:
    spec_action = node.get("action") or {}
    name = spec_action.get("name", "")
    fn = _actions.get(name)
    if fn is None:
        raise FlowError(f"未知的自动动作 {name!r}（{token.node_id}）", code="unknown_action")
    updates = fn(instance, node, dict(spec_action.get("params") or {}))
    if updates:
        update_data(instance, updates)
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
        due_at=sla.due(instance, node, now),
    )
    if pick.candidates:
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
    # The key names a token that has just started waiting: no timer can hold it yet.
    timer_create(
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
    """Stop whatever waits at this token: its open tasks, their SLA timers, its boundary timers,
    the sub-flow a call activity is waiting for, a timer it waits on."""
    node = spec_of(instance)["nodes"][token.node_id]
    for task in Task.objects.filter(token=token, status=TaskStatus.OPEN):
        task.status = TaskStatus.CANCELLED
        task.save(update_fields=["status"])
        sla.disarm(task, node)
        event(instance, "task.cancelled", token.node_id, task=task, data={"reason": reason})
    if node["type"] == "callActivity":
        for sub in (
            Instance.objects.select_for_update(of=("self",))
            .select_related("version")
            .filter(parent_token=token, status=InstanceStatus.RUNNING)
        ):
            cancel_instance(sub, reason=reason)
    if node.get("timer"):
        timer_cancel(tenant_id=instance.tenant_id, kind=TIMER_KIND, key=f"token:{token.pk}")
    disarm_boundaries(instance, token)
    _leave(token, TokenStatus.CANCELLED)


def cancel_instance(instance: Instance, *, reason: str, actor_id: int | None = None) -> None:
    """Stop a running instance (its case was withdrawn): every waiting token is cancelled with
    its tasks and timers, sub-flows included. The instance row must be locked by the caller."""
    if instance.status != InstanceStatus.RUNNING:
        return
    with recording():
        for token in Token.objects.select_for_update().filter(
            instance=instance, status=TokenStatus.ACTIVE
        ):
            cancel_token(instance, token, reason)
        instance.status = InstanceStatus.CANCELLED
        instance.ended_at = timezone.now()
        instance.save(update_fields=["status", "ended_at"])
        event(instance, "instance.cancelled", actor_id=actor_id, data={"reason": reason})


def disarm_boundaries(instance: Instance, token: Token) -> None:
    """Cancel the timers that watch a waiting token: its boundary timers and a wait's SLA."""
    sla.disarm_wait(token, spec_of(instance)["nodes"][token.node_id])
    for boundary_id in spec_of(instance).get("boundaries", {}).get(token.node_id, []):
        timer_cancel(
            tenant_id=instance.tenant_id, kind=TIMER_KIND, key=f"token:{token.pk}:{boundary_id}"
        )


def rebind_boundaries(instance: Instance, token: Token, previous: dict[str, Any]) -> None:
    """After a migration to instance.version: the waiting token's boundary timers are those of the
    new version (dropped ones cancelled, new ones set), still counted from when it arrived."""
    for boundary_id in previous.get("boundaries", {}).get(token.node_id, []):
        timer_cancel(
            tenant_id=instance.tenant_id, kind=TIMER_KIND, key=f"token:{token.pk}:{boundary_id}"
        )
    spec = spec_of(instance)
    for boundary_id in spec.get("boundaries", {}).get(token.node_id, []):
        boundary = spec["nodes"][boundary_id]
        if boundary.get("timer"):
            timer_schedule(
                tenant_id=instance.tenant_id,
                kind=TIMER_KIND,
                key=f"token:{token.pk}:{boundary_id}",
                due_at=sla.timer_due(instance, boundary["timer"], start=token.arrived_at),
                payload={
                    "instance_id": instance.pk,
                    "token_id": token.pk,
                    "boundary_id": boundary_id,
                },
            )


def move_on(instance: Instance, token: Token, *, actor_id: int | None) -> None:
    """The waiting token's node is done (task completed, timer fired, message arrived): go on."""
    with recording():
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
    if instance.parent_token_id is None:
        return
    outer = lock_instance(tokens__pk=instance.parent_token_id)
    parent = (
        Token.objects.select_for_update()
        .filter(pk=instance.parent_token_id, status=TokenStatus.ACTIVE)
        .first()
    )
    if outer is not None and parent is not None:
        parent.instance = outer
        update_data(outer, instance.data)
        event(outer, "subflow.completed", parent.node_id, data={"instance_id": instance.pk})
        move_on(outer, parent, actor_id=actor_id)


def fire_timer(payload: dict[str, Any]) -> None:
    """Timer handler body for intermediate and boundary timers (see flows.timer_handlers)."""
    instance = lock_instance(tokens__pk=payload["token_id"])
    token = (
        Token.objects.select_for_update()
        .filter(pk=payload["token_id"], status=TokenStatus.ACTIVE)
        .first()
    )
    if instance is None or token is None:
        return  # the token moved on meanwhile: the timer is moot
    token.instance = instance
    boundary_id = payload.get("boundary_id")
    with recording():
        if not boundary_id:
            event(instance, "timer.fired", token.node_id)
            move_on(instance, token, actor_id=None)
            return
        boundary = spec_of(instance)["nodes"].get(boundary_id)
        if boundary is None:
            return  # left behind by a migration to a version without it
        event(instance, "timer.fired", boundary_id, data={"attached_to": token.node_id})
        if boundary.get("cancel_activity", True):
            cancel_token(instance, token, reason=f"边界定时器 {boundary_id}")
        branch = _new_token(instance, boundary_id, via="")
        run(instance, _follow(instance, branch, boundary["outgoing"]))
