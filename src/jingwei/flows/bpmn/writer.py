"""Writing a `Graph` back as BPMN 2.0 XML: `export_bpmn`, `_Writer` (graph → `XmlElement`
tree) and `_serialize` / `_escape` (that tree → text with every namespace declared on the root).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .layout import ensure_layout
from .model import (
    BPMNDI_NS,
    DC_NS,
    DI_NS,
    JW_NS,
    STANDARD_PREFIXES,
    TIMER_KINDS,
    XML_NS,
    XSI_NS,
    Bounds,
    BpmnError,
    Diagram,
    Flow,
    Graph,
    Label,
    Node,
    XmlElement,
    _b,
    _split,
)


def _el(
    tag: str,
    attrs: Iterable[tuple[str, str]] = (),
    children: Iterable[XmlElement] = (),
    text: str | None = None,
) -> XmlElement:
    return XmlElement(tag, tuple(attrs), text, tuple(children))


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _merge(explicit: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    names = {k for k, _ in explicit}
    return explicit + [(k, v) for k, v in extra.items() if k not in names]


def export_bpmn(graph: Graph) -> str:
    """The graph as a BPMN 2.0 file (see the package docstring)."""
    graph = ensure_layout(graph)
    root = _Writer(graph).definitions()
    return _serialize(root, graph.namespaces)


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def definitions(self) -> XmlElement:
        g = self.g
        attrs = _merge([("id", g.definitions_id), ("targetNamespace", g.target_namespace)], {})
        attrs = _merge(attrs, g.definitions_attrs)
        children: list[XmlElement] = list(g.root_extras)
        children.append(self.process())
        children.extend(
            _el(_b("message"), _merge(self._id_name(m.id, m.name), m.attrs)) for m in g.messages
        )
        children.extend(self.diagram(d) for d in g.diagrams)
        return _el(_b("definitions"), attrs, children)

    @staticmethod
    def _id_name(element_id: str, name: str) -> list[tuple[str, str]]:
        return [("id", element_id)] + ([("name", name)] if name else [])

    @staticmethod
    def _doc(text: str | None) -> list[XmlElement]:
        return [] if text is None else [_el(_b("documentation"), text=text)]

    def process(self) -> XmlElement:
        g = self.g
        attrs = self._id_name(g.process_id, g.process_name)
        attrs.append(("isExecutable", "true" if g.is_executable else "false"))
        children = self._doc(g.documentation)
        if g.process_extensions:
            children.append(_el(_b("extensionElements"), children=g.process_extensions))
        children.extend(x for x in g.process_extras if x.tag == _b("laneSet"))
        children.extend(self.node(n) for n in g.nodes)
        children.extend(self.flow(f) for f in g.flows)
        children.extend(x for x in g.process_extras if x.tag != _b("laneSet"))
        return _el(_b("process"), _merge(attrs, g.process_attrs), children)

    def node(self, node: Node) -> XmlElement:
        attrs = self._id_name(node.id, node.name)
        if node.type == "boundaryEvent":
            if not node.cancel_activity:
                attrs.append(("cancelActivity", "false"))
            attrs.append(("attachedToRef", node.attached_to))
        if node.type == "callActivity" and node.called_element:
            attrs.append(("calledElement", node.called_element))
        default = next((f.id for f in self.g.flows if f.source == node.id and f.is_default), None)
        if default is not None:
            attrs.append(("default", default))
        children = self._doc(node.documentation)
        extensions = self.node_extensions(node)
        if extensions:
            children.append(_el(_b("extensionElements"), children=extensions))
        children.extend(_el(_b("incoming"), text=f.id) for f in self.g.flows if f.target == node.id)
        children.extend(_el(_b("outgoing"), text=f.id) for f in self.g.flows if f.source == node.id)
        if node.timer is not None:
            timer = node.timer
            inner = []
            kind = {v: k for k, v in TIMER_KINDS.items()}.get(timer.kind)
            if kind is not None:
                inner.append(
                    _el(
                        _b(kind),
                        [(f"{{{XSI_NS}}}type", "bpmn:tFormalExpression")],
                        text=timer.value,
                    )
                )
            attrs_t = [("id", timer.id)] if timer.id else []
            children.append(_el(_b("timerEventDefinition"), attrs_t, inner))
        elif node.message is not None:
            m = node.message
            attrs_m = ([("id", m.id)] if m.id else []) + (
                [("messageRef", m.message_ref)] if m.message_ref else []
            )
            children.append(_el(_b("messageEventDefinition"), attrs_m))
        return _el(_b(node.type), _merge(attrs, node.attrs), children)

    @staticmethod
    def node_extensions(node: Node) -> list[XmlElement]:
        jw = f"{{{JW_NS}}}"
        result: list[XmlElement] = []

        def present(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
            return [(k, v) for k, v in pairs if v]

        for a in node.assignments:
            result.append(
                _el(
                    jw + "assignment",
                    [
                        ("rule", a.rule),
                        *present(
                            ("role", a.role),
                            ("user", a.user),
                            ("field", a.field),
                            ("scope", a.scope),
                            ("when", a.when),
                        ),
                    ],
                )
            )
        if node.form is not None:
            result.append(_el(jw + "form", [("key", node.form.key)]))
        if node.outcomes:
            result.append(
                _el(
                    jw + "outcomes",
                    children=[
                        _el(jw + "outcome", [("id", o.id), *present(("name", o.name))])
                        for o in node.outcomes
                    ],
                )
            )
        if node.sla is not None:
            result.append(
                _el(
                    jw + "sla",
                    [*present(("duration", node.sla.duration)), ("calendar", node.sla.calendar)],
                    [
                        _el(
                            jw + "escalation",
                            [("after", e.after), ("action", e.action), ("target", e.target)],
                        )
                        for e in node.sla.escalations
                    ],
                )
            )
        if node.action is not None:
            params = []
            for name, value in node.action.params.items():
                if "\n" in value:
                    params.append(_el(jw + "param", [("name", name)], text=value))
                else:
                    params.append(_el(jw + "param", [("name", name), ("value", value)]))
            result.append(_el(jw + "action", [("name", node.action.name)], params))
        result.extend(node.extensions)
        return result

    def flow(self, flow: Flow) -> XmlElement:
        attrs = self._id_name(flow.id, flow.name)
        attrs += [("sourceRef", flow.source), ("targetRef", flow.target)]
        children = self._doc(flow.documentation)
        if flow.extensions:
            children.append(_el(_b("extensionElements"), children=flow.extensions))
        if flow.condition is not None:
            cattrs = [(f"{{{XSI_NS}}}type", "bpmn:tFormalExpression")]
            if flow.condition_language:
                cattrs.append(("language", flow.condition_language))
            children.append(_el(_b("conditionExpression"), cattrs, text=flow.condition))
        return _el(_b("sequenceFlow"), _merge(attrs, flow.attrs), children)

    @staticmethod
    def bounds(b: Bounds) -> XmlElement:
        return _el(
            f"{{{DC_NS}}}Bounds",
            [
                ("x", _fmt(b.x)),
                ("y", _fmt(b.y)),
                ("width", _fmt(b.width)),
                ("height", _fmt(b.height)),
            ],
        )

    def label(self, label: Label | None) -> list[XmlElement]:
        if label is None:
            return []
        inner = [self.bounds(label.bounds)] if label.bounds is not None else []
        return [_el(f"{{{BPMNDI_NS}}}BPMNLabel", label.attrs.items(), inner)]

    def diagram(self, d: Diagram) -> XmlElement:
        di = f"{{{BPMNDI_NS}}}"
        items: list[XmlElement] = []
        for s in d.shapes:
            items.append(
                _el(
                    di + "BPMNShape",
                    _merge([("id", s.id), ("bpmnElement", s.element)], s.attrs),
                    [self.bounds(s.bounds), *self.label(s.label)],
                )
            )
        for e in d.edges:
            points = [
                _el(f"{{{DI_NS}}}waypoint", [("x", _fmt(x)), ("y", _fmt(y))])
                for x, y in e.waypoints
            ]
            items.append(
                _el(
                    di + "BPMNEdge",
                    _merge([("id", e.id), ("bpmnElement", e.element)], e.attrs),
                    [*points, *self.label(e.label)],
                )
            )
        plane_attrs = [
            (k, v) for k, v in (("id", d.plane_id), ("bpmnElement", d.plane_element)) if v
        ]
        plane = _el(di + "BPMNPlane", _merge(plane_attrs, d.plane_attrs), items)
        return _el(di + "BPMNDiagram", _merge([("id", d.id)], d.attrs), [plane, *d.extras])


_INVALID_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(text: str, attribute: bool) -> str:
    bad = _INVALID_XML_CHARS.search(text)
    if bad is not None:
        raise BpmnError(f"文本中含有 XML 不允许的字符 U+{ord(bad.group()):04X}")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\r", "&#13;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return text


def _serialize(root: XmlElement, namespaces: dict[str, str]) -> str:
    prefixes: dict[str, str] = dict(STANDARD_PREFIXES)
    prefixes.update({uri: prefix for prefix, uri in namespaces.items()})

    def collect(el: XmlElement) -> Iterator[str]:
        yield el.tag
        yield from (k for k, _ in el.attrs)
        for child in el.children:
            yield from collect(child)

    taken = set(prefixes.values())
    n = 0
    for name in collect(root):
        uri, _ = _split(name)
        if uri and uri != XML_NS and uri not in prefixes:
            n += 1
            while f"ns{n}" in taken:
                n += 1
            prefixes[uri] = f"ns{n}"
            taken.add(f"ns{n}")

    def qname(name: str) -> str:
        uri, local = _split(name)
        if not uri:
            return local
        return f"{'xml' if uri == XML_NS else prefixes[uri]}:{local}"

    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']

    def write(el: XmlElement, depth: int, pretty: bool, extra: str = "") -> None:
        pad = "  " * depth if pretty else ""
        attrs = "".join(f' {qname(k)}="{_escape(v, True)}"' for k, v in el.attrs)
        out.append(f"{pad}<{qname(el.tag)}{extra}{attrs}")
        if not el.children and el.text is None:
            out.append("/>")
        elif not el.children:
            out.append(f">{_escape(el.text or '', False)}</{qname(el.tag)}>")
        else:
            mixed = not pretty or el.text is not None or any(c.tail for c in el.children)
            out.append(">")
            if el.text is not None:
                out.append(_escape(el.text, False))
            for child in el.children:
                if not mixed:
                    out.append("\n")
                write(child, depth + 1, not mixed)
                if child.tail is not None:
                    out.append(_escape(child.tail, False))
            if not mixed:
                out.append("\n" + pad)
            out.append(f"</{qname(el.tag)}>")

    declarations = "".join(
        f' xmlns:{prefix}="{_escape(uri, True)}"' for uri, prefix in prefixes.items()
    )
    write(root, 0, True, declarations)
    out.append("\n")
    return "".join(out)
