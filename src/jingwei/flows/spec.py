"""Compile a BPMN definition (flows.bpmn) into the JSON spec the engine runs (flows.engine).

Publishing validates first: a definition with any problem is refused with all of them, each with
its element id, so the designer can point at it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from jingwei.core.errors import Invalid

from .bpmn import BUILTIN_ACTIONS, BpmnError, BpmnInvalid, Graph, load_bpmn
from .expressions import check


class FlowDefinitionInvalid(Invalid):
    """The draft would not run; `problems` lists each with element id, code and message."""

    default_code = "definition_invalid"

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None):
        super().__init__(message, field="xml")
        self.problems = problems or []


def compile_spec(xml: str, *, known_processes: set[str] | None = None) -> dict[str, Any]:
    try:
        graph = load_bpmn(
            xml,
            known_actions=set(BUILTIN_ACTIONS),
            check_expression=check,
            known_processes=known_processes,
        )
    except BpmnInvalid as exc:
        problems = [asdict(p) for p in exc.problems]
        first = problems[0]
        raise FlowDefinitionInvalid(
            f"流程有 {len(problems)} 处问题，例如 {first['element_id']}：{first['message']}",
            problems,
        ) from exc
    except BpmnError as exc:
        raise FlowDefinitionInvalid(str(exc)) from exc
    return graph_to_spec(graph)


def graph_to_spec(graph: Graph) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    boundaries: dict[str, list[str]] = {}
    for node in graph.nodes:
        entry: dict[str, Any] = {
            "type": node.type,
            "name": node.name,
            "incoming": [f.id for f in graph.incoming(node.id)],
            "outgoing": [f.id for f in graph.outgoing(node.id)],
        }
        if node.assignments:
            entry["assignments"] = [asdict(a) for a in node.assignments]
        if node.form:
            entry["form_key"] = node.form.key
        if node.outcomes:
            entry["outcomes"] = [{"id": o.id, "name": o.name} for o in node.outcomes]
        if node.sla:
            entry["sla"] = {
                "duration": node.sla.duration,
                "calendar": node.sla.calendar or "calendar",
                "escalations": [asdict(e) for e in node.sla.escalations],
            }
        if node.action:
            entry["action"] = {"name": node.action.name, "params": dict(node.action.params)}
        if node.timer:
            entry["timer"] = {node.timer.kind: node.timer.value}
        if node.message:
            message = next((m for m in graph.messages if m.id == node.message.message_ref), None)
            entry["message"] = (message.name if message else "") or node.message.message_ref
        if node.type == "boundaryEvent":
            entry["attached_to"] = node.attached_to
            entry["cancel_activity"] = node.cancel_activity
            boundaries.setdefault(node.attached_to, []).append(node.id)
        if node.called_element:
            entry["called_element"] = node.called_element
        nodes[node.id] = entry
    flows = {
        f.id: {
            "source": f.source,
            "target": f.target,
            "name": f.name,
            "condition": f.condition,
            "default": f.is_default,
        }
        for f in graph.flows
    }
    return {
        "process_id": graph.process_id,
        "name": graph.process_name,
        "nodes": nodes,
        "flows": flows,
        "boundaries": boundaries,
    }
