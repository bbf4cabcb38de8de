"""The customer's progress page: behind an unguessable token, the steps done, the current one and
the next, the customer-visible comments — nothing internal (no staff names, no internal notes,
no form answers, no SLA)."""

from __future__ import annotations

import io
from typing import Any

import segno
from django.conf import settings

from jingwei.core.errors import NotFound
from jingwei.flows.models import Task, TaskStatus

from ..models import Ticket, TicketComment, TicketEvent, TicketStatus, Visibility

PUBLIC_EVENTS = {"created": "已受理", "closed": "已关闭"}


def progress_url(ticket: Ticket) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/p/{ticket.progress_token}"


def qr_png(text: str, *, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()


def qr_svg(text: str, *, scale: int = 4) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=scale, border=2, xmldecl=True)
    return out.getvalue()


def ticket_by_progress_token(token: str) -> Ticket:
    found = (
        Ticket.objects.filter(progress_token=token)
        .select_related("template", "instance__version")
        .first()
        if token and len(token) <= 64
        else None
    )
    if found is None:
        raise NotFound("进度页不存在", field="token")
    return found


def main_path(spec: dict[str, Any]) -> list[str]:
    """The user tasks in the order a case usually meets them: from the start, along the default
    (or first) way out of every node, each task once."""
    nodes, flows = spec["nodes"], spec["flows"]
    start = next(nid for nid, n in nodes.items() if n["type"] == "startEvent")
    order: list[str] = []
    seen: set[str] = set()
    current: str | None = start
    while current is not None and current not in seen:
        seen.add(current)
        node = nodes[current]
        if node["type"] == "userTask":
            order.append(current)
        outgoing = node.get("outgoing") or []
        if not outgoing:
            break
        chosen = next((f for f in outgoing if flows[f].get("default")), outgoing[0])
        current = flows[chosen]["target"]
    return order


def progress_view(token: str) -> dict[str, Any]:
    ticket = ticket_by_progress_token(token)
    steps: list[dict[str, Any]] = []
    if ticket.instance is not None:
        spec = ticket.instance.version.spec
        nodes = spec["nodes"]
        done: dict[str, Any] = {}
        current: set[str] = set()
        for node_id, status, completed_at in Task.objects.filter(
            instance=ticket.instance
        ).values_list("node_id", "status", "completed_at"):
            if status == TaskStatus.COMPLETED:
                done[node_id] = max(filter(None, [done.get(node_id), completed_at]), default=None)
            elif status == TaskStatus.OPEN:
                current.add(node_id)
        path = main_path(spec)
        for node_id in [*path, *sorted(set(done) - set(path))]:
            if node_id in current:
                state = "current"
            elif node_id in done:
                state = "done"
            else:
                state = "todo"
            steps.append(
                {
                    "name": nodes[node_id].get("name") or node_id,
                    "state": state,
                    "completed_at": done.get(node_id) if state == "done" else None,
                }
            )
        if ticket.status == TicketStatus.OPEN:
            after_current = False
            for step in steps:
                if step["state"] == "current":
                    after_current = True
                elif after_current and step["state"] == "todo":
                    step["state"] = "next"
                    break
    comments = [
        {"at": c.created_at, "author": "客服" if c.author_id else "您", "body": c.body}
        for c in TicketComment.objects.filter(ticket=ticket, visibility=Visibility.PUBLIC)
        .exclude(author_name="系统")
        .order_by("created_at", "id")
    ]
    events = [
        {"at": e.at, "title": PUBLIC_EVENTS[e.kind]}
        for e in TicketEvent.objects.filter(ticket=ticket, public=True, kind__in=PUBLIC_EVENTS)
    ]
    return {
        "number": ticket.number,
        "title": ticket.template.name,
        "status": ticket.status,
        "status_label": TicketStatus(ticket.status).label,
        "created_at": ticket.created_at,
        "closed_at": ticket.closed_at,
        "steps": steps,
        "comments": comments,
        "events": events,
    }
