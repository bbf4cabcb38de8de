"""Layout for nodes and flows the diagram does not draw yet: `ensure_layout` and its helpers."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from .model import Bounds, Diagram, Edge, Graph, Node, Shape

_SIZES = {
    "startEvent": (36.0, 36.0),
    "endEvent": (36.0, 36.0),
    "intermediateCatchEvent": (36.0, 36.0),
    "boundaryEvent": (36.0, 36.0),
    "exclusiveGateway": (50.0, 50.0),
    "parallelGateway": (50.0, 50.0),
}


def ensure_layout(graph: Graph) -> Graph:
    """A copy of `graph` whose first diagram draws every node and flow: the shapes and edges it
    already has stay as they are; missing ones are placed left to right by distance from the start
    (boundary events on the lower edge of their activity) below anything already drawn."""
    diagram = (
        graph.diagrams[0]
        if graph.diagrams
        else Diagram(id="BPMNDiagram_1", plane_id="BPMNPlane_1", plane_element=graph.process_id)
    )
    drawn = {s.element for s in diagram.shapes}
    routed = {e.element for e in diagram.edges}
    missing_nodes = [n for n in graph.nodes if n.id not in drawn]
    missing_flows = [f for f in graph.flows if f.id not in routed]
    if graph.diagrams and not missing_nodes and not missing_flows:
        return graph
    used_ids = {s.id for s in diagram.shapes} | {e.id for e in diagram.edges}
    used_ids |= {n.id for n in graph.nodes} | {f.id for f in graph.flows}

    def new_id(base: str) -> str:
        candidate, n = f"{base}_di", 1
        while candidate in used_ids:
            n += 1
            candidate = f"{base}_di{n}"
        used_ids.add(candidate)
        return candidate

    top = max((s.bounds.y + s.bounds.height for s in diagram.shapes), default=0.0)
    origin_y = top + 100.0 if diagram.shapes else 80.0
    columns = _columns(graph, [n for n in missing_nodes if n.type != "boundaryEvent"])
    rows: dict[int, int] = {}
    bounds: dict[str, Bounds] = {s.element: s.bounds for s in diagram.shapes}
    shapes = list(diagram.shapes)
    for node in missing_nodes:
        if node.type == "boundaryEvent":
            continue
        column = columns.get(node.id, 0)
        row = rows.get(column, 0)
        rows[column] = row + 1
        width, height = _SIZES.get(node.type, (100.0, 80.0))
        cx, cy = 170.0 + column * 170.0, origin_y + 40.0 + row * 130.0
        bounds[node.id] = Bounds(cx - width / 2, cy - height / 2, width, height)
        shapes.append(Shape(new_id(node.id), node.id, bounds[node.id]))
    per_host: dict[str, int] = {}
    for node in missing_nodes:
        if node.type != "boundaryEvent":
            continue
        host = bounds.get(node.attached_to)
        k = per_host.get(node.attached_to, 0)
        per_host[node.attached_to] = k + 1
        if host is None:
            box = Bounds(
                170.0 + k * 50.0,
                origin_y + 40.0 + 130.0 * (max(rows.values(), default=0)),
                36.0,
                36.0,
            )
        else:
            box = Bounds(
                host.x + host.width - 54.0 - k * 46.0, host.y + host.height - 18.0, 36.0, 36.0
            )
        bounds[node.id] = box
        shapes.append(Shape(new_id(node.id), node.id, box))
    edges = list(diagram.edges)
    for flow in missing_flows:
        edges.append(
            Edge(new_id(flow.id), flow.id, _route(bounds.get(flow.source), bounds.get(flow.target)))
        )
    laid = replace(diagram, shapes=shapes, edges=edges)
    return replace(graph, diagrams=[laid, *graph.diagrams[1:]])


def _columns(graph: Graph, nodes: list[Node]) -> dict[str, int]:
    """Distance (in flows) from the start events, breadth first; back edges do not push."""
    succ: dict[str, list[str]] = {}
    for f in graph.flows:
        succ.setdefault(f.source, []).append(f.target)
    for n in graph.nodes:
        if n.type == "boundaryEvent":
            succ.setdefault(n.attached_to, []).extend(succ.get(n.id, []))
    depth: dict[str, int] = {}
    queue = deque(n.id for n in graph.nodes if n.type == "startEvent")
    for node_id in queue:
        depth[node_id] = 0
    while True:
        while queue:
            current = queue.popleft()
            for nxt in succ.get(current, []):
                if nxt not in depth:
                    depth[nxt] = depth[current] + 1
                    queue.append(nxt)
        rest = next((n.id for n in nodes if n.id not in depth), None)
        if rest is None:
            return depth
        depth[rest] = 0
        queue.append(rest)


def _route(source: Bounds | None, target: Bounds | None) -> list[tuple[float, float]]:
    if source is None or target is None:
        box = source or target or Bounds(0, 0, 0, 0)
        return [
            (box.x + box.width, box.y + box.height / 2),
            (box.x + box.width + 50, box.y + box.height / 2),
        ]
    sx, sy = source.x + source.width, source.y + source.height / 2
    tx, ty = target.x, target.y + target.height / 2
    if sy == ty:
        return [(sx, sy), (tx, ty)]
    mid = (sx + tx) / 2
    return [(sx, sy), (mid, sy), (mid, ty), (tx, ty)]
