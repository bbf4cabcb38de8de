"""Reading BPMN 2.0 XML into a `Graph`: `parse_bpmn`, the defused XML parser (no DTD, no
entities, no external resources, a size limit: XXE and XML bombs are refused) and `_Reader`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from defusedxml.common import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from .model import (
    BPMN_NS,
    BPMNDI_NS,
    DC_NS,
    DEFAULT_TARGET_NAMESPACE,
    DI_NS,
    JW_NS,
    NODE_TYPES,
    STANDARD_PREFIXES,
    TIMER_KINDS,
    XML_NS,
    Action,
    Assignment,
    Bounds,
    BpmnError,
    Diagram,
    Edge,
    Escalation,
    Flow,
    Form,
    Graph,
    Label,
    Message,
    MessageTrigger,
    Node,
    Outcome,
    Problem,
    Shape,
    Sla,
    Timer,
    UnsupportedElement,
    XmlElement,
    _b,
    _is_bpmn,
    _is_jw,
    _label,
    _local,
    _short,
    _split,
)

# Process children that are layout or documentation, not behaviour: kept verbatim, never run.
_PROCESS_ARTIFACTS = frozenset({"laneSet", "textAnnotation", "association", "group"})
_MAX_RAW_DEPTH = 50  # nesting of kept vendor XML; deeper is an attack, not a diagram


class _Builder(ET.TreeBuilder):
    """Records namespace declarations, which ElementTree forgets, so prefixes survive."""

    def __init__(self) -> None:
        super().__init__()
        self.declarations: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self.declarations.append((prefix, uri))


def _read_xml(data: bytes | str) -> tuple[ET.Element, list[tuple[str, str]]]:
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes | str):
        raise BpmnError("BPMN 文件应为文本或字节")
    # The limit as the package holds it now, so that setting `jingwei.flows.bpmn.MAX_BPMN_BYTES`
    # (as the tests do with monkeypatch) still takes effect.
    from . import MAX_BPMN_BYTES

    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > MAX_BPMN_BYTES:
        raise BpmnError(f"文件过大（{size} 字节），上限为 {MAX_BPMN_BYTES} 字节")
    if not data.strip():
        raise BpmnError("文件为空")
    builder = _Builder()
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        root = parser.close()
    except DTDForbidden as exc:
        raise BpmnError("文件含有 DTD 声明，可能是 XML 炸弹或外部实体攻击，已拒绝导入") from exc
    except EntitiesForbidden as exc:
        raise BpmnError("文件声明了 XML 实体，可能是 XML 炸弹，已拒绝导入") from exc
    except DefusedXmlException as exc:
        raise BpmnError("文件引用了外部资源，出于安全原因已拒绝导入") from exc
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise BpmnError(f"XML 格式错误（第 {line} 行第 {column} 列）：{exc}") from exc
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise BpmnError(f"无法读取 XML：{exc}") from exc
    return root, builder.declarations


def parse_bpmn(data: bytes | str) -> Graph:
    """Read a BPMN 2.0 file (see the package docstring)."""
    root, declarations = _read_xml(data)
    if root.tag != _b("definitions"):
        uri, local = _split(root.tag)
        if local == "definitions" and uri:
            raise BpmnError(f"不是 BPMN 2.0 文件：根元素的命名空间是 {uri}，应为 {BPMN_NS}")
        raise BpmnError(f"不是 BPMN 2.0 文件：根元素是 <{local}>，应为 <bpmn:definitions>")
    processes = [child for child in root if child.tag == _b("process")]
    if not processes:
        raise BpmnError("文件中没有流程（bpmn:process）")
    if len(processes) > 1:
        ids = "、".join(p.get("id") or "（无 id）" for p in processes)
        raise BpmnError(f"文件包含 {len(processes)} 个流程（{ids}），一个定义只能有一个流程")
    try:
        return _Reader(_namespaces(declarations)).read(root, processes[0])
    except RecursionError as exc:
        raise BpmnError("文件嵌套过深，无法读取") from exc


def _namespaces(declarations: list[tuple[str, str]]) -> dict[str, str]:
    """Prefix → URI for the namespaces other than ours and the standard ones, first prefix per URI
    kept, clashes renamed, so that the exported file declares each once on the root."""
    result: dict[str, str] = {}
    taken = set(STANDARD_PREFIXES.values()) | {"xml", "xmlns"}
    for prefix, uri in declarations:
        if uri in STANDARD_PREFIXES or uri == XML_NS or uri in result.values():
            continue
        name = prefix
        n = 0
        while not name or name in taken or name in result:
            n += 1
            name = f"ns{n}"
        result[name] = uri
    return result


def _raw(el: ET.Element, depth: int = 0) -> XmlElement:
    if depth > _MAX_RAW_DEPTH:
        raise BpmnError(f"扩展元素嵌套超过 {_MAX_RAW_DEPTH} 层，无法导入")
    children = tuple(_raw(child, depth + 1) for child in el)
    text = el.text
    if children and text is not None and not text.strip():
        text = None
    tail = el.tail if el.tail is not None and el.tail.strip() else None
    return XmlElement(
        tag=el.tag,
        attrs=tuple(el.attrib.items()),
        text=text or None,
        children=children,
        tail=tail,
    )


def _number(text: str | None) -> float:
    if text is None:
        raise ValueError("missing")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _attrs(el: ET.Element, known: Iterable[str]) -> dict[str, str]:
    skip = set(known)
    return {k: v for k, v in el.attrib.items() if k not in skip}


class _Reader:
    def __init__(self, namespaces: dict[str, str]) -> None:
        self.namespaces = namespaces
        self.unsupported: list[UnsupportedElement] = []
        self.issues: list[Problem] = []

    def unsupported_el(self, element_id: str, tag: str, detail: str = "") -> None:
        self.unsupported.append(
            UnsupportedElement(
                element_id,
                _short(tag, self.namespaces),
                _short(detail, self.namespaces) if detail else "",
            )
        )

    def read(self, root: ET.Element, process: ET.Element) -> Graph:
        graph = Graph(
            process_id=process.get("id", ""),
            process_name=process.get("name", ""),
            is_executable=process.get("isExecutable", "false").strip() == "true",
            definitions_id=root.get("id") or "Definitions_1",
            target_namespace=root.get("targetNamespace") or DEFAULT_TARGET_NAMESPACE,
            definitions_attrs=_attrs(root, ("id", "targetNamespace")),
            process_attrs=_attrs(process, ("id", "name", "isExecutable")),
            namespaces=self.namespaces,
        )
        for child in root:
            if child.tag == _b("process"):
                continue
            if child.tag == _b("message"):
                graph.messages.append(
                    Message(
                        child.get("id", ""), child.get("name", ""), _attrs(child, ("id", "name"))
                    )
                )
            elif child.tag == f"{{{BPMNDI_NS}}}BPMNDiagram":
                graph.diagrams.append(self.diagram(child))
            else:
                graph.root_extras.append(_raw(child))
        defaults: dict[str, str] = {}
        for child in process:
            tag = child.tag
            local = _local(tag)
            if tag == _b("documentation"):
                if graph.documentation is None:
                    graph.documentation = child.text or ""
            elif tag == _b("extensionElements"):
                graph.process_extensions.extend(_raw(c) for c in child)
            elif tag == _b("sequenceFlow"):
                graph.flows.append(self.flow(child))
            elif _is_bpmn(tag) and local in NODE_TYPES:
                node = self.node(child, local)
                if node is not None:
                    graph.nodes.append(node)
                    if child.get("default"):
                        defaults[node.id] = child.get("default", "")
            elif _is_bpmn(tag) and local not in _PROCESS_ARTIFACTS:
                definition = next(
                    (d.tag for d in child if _is_bpmn(d.tag) and d.tag.endswith("EventDefinition")),
                    "",
                )
                self.unsupported_el(child.get("id", ""), tag, definition)
            else:
                graph.process_extras.append(_raw(child))
        for node_id, flow_id in defaults.items():
            flow = next((f for f in graph.flows if f.id == flow_id), None)
            if flow is None or flow.source != node_id:
                self.issues.append(
                    Problem(
                        node_id,
                        "default_invalid",
                        f"节点 {node_id} 的默认路径 {flow_id} 不是它的出线",
                    )
                )
            else:
                flow.is_default = True
        # Lane sets come before the flow elements in a process (the order export writes).
        graph.process_extras.sort(key=lambda x: x.tag != _b("laneSet"))
        graph.unsupported = self.unsupported
        graph.issues = self.issues
        return graph

    def node(self, el: ET.Element, local: str) -> Node | None:
        node_id = el.get("id", "")
        node = Node(
            id=node_id,
            type=local,  # type: ignore[arg-type]  # checked against NODE_TYPES by the caller
            name=el.get("name", ""),
            attrs=_attrs(
                el, ("id", "name", "default", "attachedToRef", "cancelActivity", "calledElement")
            ),
        )
        definitions: list[ET.Element] = []
        odd: list[ET.Element] = []
        for child in el:
            tag = child.tag
            if tag == _b("documentation"):
                if node.documentation is None:
                    node.documentation = child.text or ""
            elif tag == _b("extensionElements"):
                self.extensions(child, node)
            elif tag in (_b("incoming"), _b("outgoing")):
                continue  # derived from the flows on export
            elif _is_bpmn(tag) and _local(tag).endswith("EventDefinition"):
                definitions.append(child)
            elif _is_bpmn(tag):
                odd.append(child)
        if odd:
            for child in odd:
                self.unsupported_el(node_id, el.tag, child.tag)
            return None
        kinds = [_local(d.tag) for d in definitions]
        if local == "intermediateCatchEvent":
            if kinds not in (["timerEventDefinition"], ["messageEventDefinition"]):
                self.unsupported_el(node_id, el.tag, definitions[0].tag if definitions else "")
                return None
        elif local == "boundaryEvent":
            if kinds != ["timerEventDefinition"]:
                self.unsupported_el(node_id, el.tag, definitions[0].tag if definitions else "")
                return None
            node.attached_to = el.get("attachedToRef", "")
            node.cancel_activity = el.get("cancelActivity", "true").strip() != "false"
        elif definitions:
            self.unsupported_el(node_id, el.tag, definitions[0].tag)
            return None
        if local == "callActivity":
            node.called_element = el.get("calledElement", "")
        if kinds == ["timerEventDefinition"]:
            node.timer = self.timer(definitions[0])
        elif kinds == ["messageEventDefinition"]:
            node.message = MessageTrigger(
                definitions[0].get("messageRef", ""), definitions[0].get("id", "")
            )
        return node

    def timer(self, el: ET.Element) -> Timer:
        for child in el:
            if _is_bpmn(child.tag) and _local(child.tag) in TIMER_KINDS:
                return Timer(
                    TIMER_KINDS[_local(child.tag)], (child.text or "").strip(), el.get("id", "")
                )
        return Timer("", "", el.get("id", ""))

    def extensions(self, el: ET.Element, node: Node) -> None:
        has_outcomes = False
        for child in el:
            local = _local(child.tag)
            if not _is_jw(child.tag):
                node.extensions.append(_raw(child))
            elif local == "assignment":
                node.assignments.append(
                    Assignment(
                        rule=child.get("rule", ""),
                        role=child.get("role", ""),
                        user=child.get("user", ""),
                        field=child.get("field", ""),
                        scope=child.get("scope", ""),
                        when=child.get("when", ""),
                    )
                )
            elif local == "form" and node.form is None:
                node.form = Form(child.get("key", ""))
            elif local == "outcomes" and not has_outcomes:
                has_outcomes = True
                node.outcomes = [
                    Outcome(o.get("id", ""), o.get("name", ""))
                    for o in child
                    if o.tag == f"{{{JW_NS}}}outcome"
                ]
            elif local == "sla" and node.sla is None:
                calendar = child.get("calendar")
                node.sla = Sla(
                    duration=child.get("duration", ""),
                    calendar="calendar" if calendar is None else calendar,
                    escalations=[
                        Escalation(e.get("after", ""), e.get("action", ""), e.get("target", ""))
                        for e in child
                        if e.tag == f"{{{JW_NS}}}escalation"
                    ],
                )
            elif local == "action" and node.action is None:
                action = Action(child.get("name", ""))
                for param in child:
                    if param.tag != f"{{{JW_NS}}}param":
                        continue
                    name = param.get("name", "")
                    value = param.get("value")
                    if name in action.params:
                        self.issues.append(
                            Problem(
                                node.id,
                                "param_duplicate",
                                f"{_label(node)} 的动作参数 {name} 重复出现",
                            )
                        )
                    action.params[name] = param.text or "" if value is None else value
                node.action = action
            else:
                node.extensions.append(_raw(child))  # unknown or repeated: validate names it

    def flow(self, el: ET.Element) -> Flow:
        flow = Flow(
            id=el.get("id", ""),
            source=el.get("sourceRef", ""),
            target=el.get("targetRef", ""),
            name=el.get("name", ""),
            attrs=_attrs(el, ("id", "name", "sourceRef", "targetRef")),
        )
        for child in el:
            if child.tag == _b("documentation"):
                if flow.documentation is None:
                    flow.documentation = child.text or ""
            elif child.tag == _b("extensionElements"):
                flow.extensions.extend(_raw(c) for c in child)
            elif child.tag == _b("conditionExpression"):
                flow.condition = (child.text or "").strip()
                flow.condition_language = child.get("language", "")
        return flow

    def diagram(self, el: ET.Element) -> Diagram:
        diagram = Diagram(
            id=el.get("id", ""), plane_id="", plane_element="", attrs=_attrs(el, ("id",))
        )
        for child in el:
            if child.tag != f"{{{BPMNDI_NS}}}BPMNPlane":
                diagram.extras.append(_raw(child))
                continue
            diagram.plane_id = child.get("id", "")
            diagram.plane_element = child.get("bpmnElement", "")
            diagram.plane_attrs = _attrs(child, ("id", "bpmnElement"))
            for item in child:
                try:
                    if item.tag == f"{{{BPMNDI_NS}}}BPMNShape":
                        diagram.shapes.append(self.shape(item))
                    elif item.tag == f"{{{BPMNDI_NS}}}BPMNEdge":
                        diagram.edges.append(self.edge(item))
                except ValueError:
                    self.issues.append(
                        Problem(
                            item.get("bpmnElement", "") or item.get("id", ""),
                            "di_invalid",
                            f"图形 {item.get('id', '')} 的坐标无效，已忽略",
                        )
                    )
        return diagram

    @staticmethod
    def bounds(el: ET.Element | None) -> Bounds:
        if el is None:
            raise ValueError("no bounds")
        return Bounds(
            _number(el.get("x")),
            _number(el.get("y")),
            _number(el.get("width")),
            _number(el.get("height")),
        )

    def label(self, el: ET.Element | None) -> Label | None:
        if el is None:
            return None
        inner = el.find(f"{{{DC_NS}}}Bounds")
        return Label(self.bounds(inner) if inner is not None else None, dict(el.attrib))

    def shape(self, el: ET.Element) -> Shape:
        return Shape(
            id=el.get("id", ""),
            element=el.get("bpmnElement", ""),
            bounds=self.bounds(el.find(f"{{{DC_NS}}}Bounds")),
            label=self.label(el.find(f"{{{BPMNDI_NS}}}BPMNLabel")),
            attrs=_attrs(el, ("id", "bpmnElement")),
        )

    def edge(self, el: ET.Element) -> Edge:
        return Edge(
            id=el.get("id", ""),
            element=el.get("bpmnElement", ""),
            waypoints=[
                (_number(w.get("x")), _number(w.get("y")))
                for w in el.findall(f"{{{DI_NS}}}waypoint")
            ],
            label=self.label(el.find(f"{{{BPMNDI_NS}}}BPMNLabel")),
            attrs=_attrs(el, ("id", "bpmnElement")),
        )
