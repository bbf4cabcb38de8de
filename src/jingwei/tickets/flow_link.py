"""A ticket keeps a copy of where its flow stands: `stage` (the open steps' names) and `status`
(resolved when the flow completes). The flow engine tells us, once per operation, which
instances moved (flows.engine.listen); the engine itself knows nothing of tickets."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from jingwei.flows import engine
from jingwei.flows.models import Instance, InstanceStatus, Task, TaskStatus, Token, TokenStatus

from .models import Ticket, TicketStatus

WAITING = ("intermediateCatchEvent", "callActivity")


@engine.listen
def follow_flows(instances: list[Instance]) -> None:
    by_id = {i.pk: i for i in instances}
    tickets = list(
        Ticket.objects.filter(instance_id__in=list(by_id)).only("id", "instance_id", "status")
    )
    if not tickets:
        return
    steps: dict[int, list[str]] = {}
    for instance_id, name in Task.objects.filter(
        instance_id__in=list(by_id), status=TaskStatus.OPEN
    ).values_list("instance_id", "name"):
        steps.setdefault(instance_id, []).append(name)
    for ticket in tickets:
        assert ticket.instance_id is not None
        instance = by_id[ticket.instance_id]
        names = steps.get(instance.pk)
        if names is None and instance.status == InstanceStatus.RUNNING:
            nodes = engine.spec_of(instance)["nodes"]
            names = [
                nodes[node_id].get("name") or node_id
                for node_id in Token.objects.filter(
                    instance_id=instance.pk, status=TokenStatus.ACTIVE
                ).values_list("node_id", flat=True)
                if nodes.get(node_id, {}).get("type") in WAITING
            ]
        update: dict[str, object] = {
            "stage": "、".join(sorted(set(names or [])))[:200],
            "updated_at": timezone.now(),
        }
        if instance.status == InstanceStatus.COMPLETED and ticket.status == TicketStatus.OPEN:
            update.update(status=TicketStatus.RESOLVED, stage="已完成", closed_at=timezone.now())
        elif instance.status == InstanceStatus.CANCELLED and ticket.status == TicketStatus.OPEN:
            update.update(status=TicketStatus.CLOSED, stage="已关闭", closed_at=timezone.now())
        elif instance.status != InstanceStatus.RUNNING:
            continue
        Ticket.objects.filter(pk=ticket.pk).update(**update)


# The shipped after-sales SOP reserves and consumes parts and posts a settlement line. Those
# actions belong to the parts library (catalog) and settlement modules, which are not built yet;
# until one registers its own, the step records that it was reached and passes, so tickets are
# not stuck at 派单. A real action registered later replaces these (engine.action overwrites).
DEFERRED_ACTIONS = {
    "reserve_parts": "预留备件",
    "consume_parts": "扣减备件",
    "post_settlement_line": "生成结算明细",
}


def _deferred(name: str) -> engine.Action:
    def run(instance: Instance, node: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        waiting = list(instance.data.get("deferred_actions") or [])
        waiting.append({"action": name, "at": timezone.now().isoformat()})
        return {"deferred_actions": waiting}

    return run


for _name in DEFERRED_ACTIONS:
    if _name not in engine.known_actions():
        engine.action(_name)(_deferred(_name))
