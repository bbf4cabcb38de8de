"""BPMN 2.0 files in and out: parse a definition into plain dataclasses, check it against the subset
the engine runs, and write it back so that bpmn-js (and any other BPMN tool) opens it again with
its layout intact. No database, no Django: the engine compiles a `Graph` into its own spec.

Public API
----------
parse_bpmn(data) -> Graph
    Bytes or str. Raises `BpmnError` (a Chinese message) for what cannot be read at all: malformed
    XML, a DTD or entity declaration (XML bombs, external entities: defusedxml), a root that is not
    bpmn:definitions, no process or several processes, a file over `MAX_BPMN_BYTES`, vendor XML
    nested deeper than 50 levels. Anything else
    never raises: unsupported elements are collected in `Graph.unsupported` and smaller defects in
    `Graph.issues`, and `validate` reports both.
validate(graph, *, known_form_keys=None, known_actions=None, check_expression=None,
         known_processes=None) -> list[Problem]
    Every problem found, each with the element id, a stable code and a Chinese message. An empty
    list means the engine can run the definition. A `None` set skips that check;
    `check_expression(text)` returns an error message or None.
load_bpmn(data, **validate_kwargs) -> Graph
    parse + validate; raises `BpmnInvalid` (a `BpmnError` carrying `.problems`) unless clean.
export_bpmn(graph) -> str
    BPMN XML (UTF-8 declaration). The diagram section read from the file is written back as it
    was; nodes and flows without a shape or edge get one from `ensure_layout`.
ensure_layout(graph) -> Graph
    A copy whose first diagram has a shape for every node and an edge for every flow.
parse_duration(text) -> timedelta / parse_datetime(text) -> datetime
    The ISO 8601 forms timers and SLAs accept (see below); `ValueError` otherwise.

import(export(import(x))) == import(x) holds for every file without unsupported elements: the
graph keeps the diagram (shapes, edges, bounds, waypoints, labels, colour attributes), unknown
attributes, documentation, other vendors' extension elements (camunda:…, kept verbatim as
`XmlElement`), lanes, text annotations, pools and their prefixes.

Supported subset (DESIGN §5)
----------------------------
startEvent (no event definition), endEvent (none), userTask (an approval when it has outcomes),
serviceTask (runs a built-in `jw:action`), exclusiveGateway (conditions on its outgoing flows,
`default` names the flow taken when none holds), parallelGateway (fork, join, or both at once),
intermediateCatchEvent with one timerEventDefinition (timeDuration or timeDate) or one
messageEventDefinition (messageRef → a bpmn:message whose name the outside signal carries),
boundaryEvent with one timerEventDefinition on a userTask, serviceTask or callActivity
(cancelActivity="false" = non-interrupting), callActivity (calledElement = the process id of
another definition), sequenceFlow (conditionExpression text is a CEL expression over the case
data). Lanes, pools, text annotations, associations and groups are layout: kept, not executed.
Everything else (scriptTask, plain task, send/receive/manual/businessRule tasks, subProcess,
inclusive/complex/event-based gateways, signal/error/escalation/terminate/… events, timer or
message start events, multi-instance and loop markers, data objects…) is unsupported.

Durations are ISO 8601 `PnDTnHnMnS` (days, hours, minutes, seconds, decimals allowed: `PT2H`,
`P1DT12H`, `PT0M`); years, months and weeks are refused because they have no fixed length.
Dates (`timeDate`) are ISO 8601 with an offset: `2025-06-01T09:00:00+08:00` or `…Z`.

Extension namespace  xmlns:jw="http://jingwei.example/schema/bpmn"
--------------------------------------------------------------------
All inside a node's bpmn:extensionElements; attributes left out read as "".

<jw:assignment rule="…" role="" user="" field="" scope="" when=""/>      userTask, repeatable
    Who gets the task. rule: role (everyone holding `role` becomes a candidate), user (`user` = an
    employee number), field (the employee chosen in the case's form field `field`, e.g. the
    engineer picked at dispatch), least_loaded / round_robin (one holder of `role`: the fewest
    open tasks / the next in turn), manager (the case owner's manager). scope limits role holders
    to those covering the case: region (default) or department. Several rules: the first whose
    CEL condition `when` holds applies (`when` empty = always; only the last rule may omit it),
    which routes by region, source or type of the case. No rule: the task waits in a shared pool.
<jw:form key="after_sales"/>                                   userTask, startEvent
    The form (ticket template) the task or the start shows.
<jw:outcomes><jw:outcome id="approve" name="同意"/>…</jw:outcomes>   userTask
    Makes the task an approval: completing it chooses one outcome id, which later conditions
    read (the shipped flows write `outcome == "reject"` on the gateway after the task).
<jw:sla duration="PT2H" calendar="working|calendar">                     userTask, callActivity,
    <jw:escalation after="PT0M" action="remind|reassign|alert"            message catch
                   target="assignee|supervisor|manager|role:<name>"/>
    …
</jw:sla>
    The time the node may take, counted in working time (the business calendar) or plain
    calendar time (the default when calendar is left out); the escalation steps run in order,
    `after` counting from the breach (so they must not go backwards).
<jw:action name="notify|set_field|webhook|reserve_parts|consume_parts|post_settlement_line">
    <jw:param name="template" value="…"/>   (or the value as text content, for long values)
</jw:action>                                                     serviceTask (required there)
    The built-in action and its parameters (`BUILTIN_ACTIONS`; the engine's registry decides).

Problem codes (`validate`)
--------------------------
Beyond the element checks: exactly one start event, at least one end event; every node reachable
from the start, none without an outgoing flow (except end events), none trapped in a loop that
cannot reach an end; only gateways branch (a task with two outgoing flows is `implicit_split`);
conditions only on an exclusive gateway's outgoing flows, each of which needs one unless it is the
default; and a token game over the graph (every exclusive choice and boundary timer explored)
finds parallel joins that can wait forever and forked branches that meet without a join.

unsupported, id_missing, duplicate_id, param_duplicate, default_invalid, di_invalid, start_missing,
start_multiple, start_has_incoming, end_missing, end_has_outgoing, flow_source_missing,
flow_target_missing, boundary_target_missing, boundary_target_invalid, boundary_has_incoming,
implicit_split, condition_missing, condition_not_allowed, default_not_allowed, default_multiple,
default_with_condition, expression_invalid, form_invalid, form_unknown, action_missing,
action_unknown, assignment_invalid, outcome_invalid, sla_invalid, timer_invalid, message_invalid,
call_invalid, call_unknown, extension_unknown, extension_misplaced, unreachable, dead_end,
no_path_to_end, parallel_deadlock, parallel_unsynchronized.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from defusedxml.common import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"
JW_NS = "http://jingwei.example/schema/bpmn"

STANDARD_PREFIXES: dict[str, str] = {
    BPMN_NS: "bpmn",
    BPMNDI_NS: "bpmndi",
    DC_NS: "dc",
    DI_NS: "di",
    XSI_NS: "xsi",
    JW_NS: "jw",
}
DEFAULT_TARGET_NAMESPACE = "http://bpmn.io/schema/bpmn"
MAX_BPMN_BYTES = 5 * 1024 * 1024

NodeType = Literal[
    "startEvent",
    "endEvent",
    "userTask",
    "serviceTask",
    "exclusiveGateway",
    "parallelGateway",
    "intermediateCatchEvent",
    "boundaryEvent",
    "callActivity",
]
NODE_TYPES: tuple[NodeType, ...] = get_args(NodeType)
ACTIVITY_TYPES = frozenset({"userTask", "serviceTask", "callActivity"})

ASSIGNMENT_RULES = frozenset({"role", "user", "field", "least_loaded", "round_robin", "manager"})
ROLE_RULES = frozenset({"role", "least_loaded", "round_robin"})
ASSIGNMENT_SCOPES = frozenset({"", "region", "department"})
SLA_CALENDARS = frozenset({"working", "calendar"})
ESCALATION_ACTIONS = frozenset({"remind", "reassign", "alert"})
ESCALATION_TARGETS = frozenset({"assignee", "supervisor", "manager"})
BUILTIN_ACTIONS = frozenset(
    {"notify", "set_field", "webhook", "reserve_parts", "consume_parts", "post_settlement_line"}
)
TIMER_KINDS = {"timeDuration": "duration", "timeDate": "date", "timeCycle": "cycle"}

# Process children that are layout or documentation, not behaviour: kept verbatim, never run.
_PROCESS_ARTIFACTS = frozenset({"laneSet", "textAnnotation", "association", "group"})
_MAX_RAW_DEPTH = 50  # nesting of kept vendor XML; deeper is an attack, not a diagram
_TOKEN_GAME_LIMIT = 5_000  # markings explored by the parallel check before it gives up quietly

_TAG_NAMES = {
    "task": "任务",
    "scriptTask": "脚本任务",
    "sendTask": "发送任务",
    "receiveTask": "接收任务",
    "manualTask": "手工任务",
    "businessRuleTask": "业务规则任务",
    "subProcess": "子流程",
    "transaction": "事务子流程",
    "adHocSubProcess": "自由子流程",
    "inclusiveGateway": "包容网关",
    "complexGateway": "复杂网关",
    "eventBasedGateway": "事件网关",
    "intermediateThrowEvent": "中间抛出事件",
    "dataObject": "数据对象",
    "dataObjectReference": "数据对象引用",
    "dataStoreReference": "数据存储引用",
    "timerEventDefinition": "定时器",
    "messageEventDefinition": "消息",
    "signalEventDefinition": "信号",
    "errorEventDefinition": "错误",
    "escalationEventDefinition": "升级",
    "terminateEventDefinition": "终止",
    "compensateEventDefinition": "补偿",
    "conditionalEventDefinition": "条件",
    "linkEventDefinition": "链接",
    "cancelEventDefinition": "取消",
    "multiInstanceLoopCharacteristics": "多实例",
    "standardLoopCharacteristics": "循环",
    "startEvent": "开始事件",
    "endEvent": "结束事件",
    "boundaryEvent": "边界事件",
    "intermediateCatchEvent": "中间捕获事件",
    "userTask": "用户任务",
    "serviceTask": "自动任务",
    "callActivity": "调用活动",
    "exclusiveGateway": "排他网关",
    "parallelGateway": "并行网关",
    "ioSpecification": "输入输出定义",
    "dataInputAssociation": "数据输入",
    "dataOutputAssociation": "数据输出",
    "potentialOwner": "候选人定义",
    "humanPerformer": "执行人定义",
}


class BpmnError(ValueError):
    """The file cannot be read as a BPMN definition. `str(error)` is a Chinese message."""


class BpmnInvalid(BpmnError):
    """The file was read but breaks the rules the engine needs; `problems` lists each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "；".join(p.message for p in problems[:20])
        more = f"；另有 {len(problems) - 20} 个问题" if len(problems) > 20 else ""
        super().__init__(f"流程定义有 {len(problems)} 个问题：{lines}{more}")


# --------------------------------------------------------------------------------------------
# The graph


@dataclass(frozen=True)
class XmlElement:
    """A piece of XML kept verbatim (another vendor's extension, a lane set, a pool…).
    `tag` and attribute names are in Clark notation: `{namespace}local`."""

    tag: str
    attrs: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    children: tuple[XmlElement, ...] = ()
    tail: str | None = None


@dataclass(frozen=True)
class Problem:
    element_id: str
    code: str
    message: str


@dataclass(frozen=True)
class UnsupportedElement:
    """An element the engine cannot run. `tag` is like "bpmn:scriptTask"; `detail` names the part
    that makes it unsupported when the element itself is a supported kind (a timer start event:
    tag "bpmn:startEvent", detail "bpmn:timerEventDefinition")."""

    element_id: str
    tag: str
    detail: str = ""


@dataclass
class Assignment:
    rule: str
    role: str = ""
    user: str = ""
    field: str = ""
    scope: str = ""
    when: str = ""


@dataclass
class Form:
    key: str


@dataclass
class Outcome:
    id: str
    name: str = ""


@dataclass
class Escalation:
    after: str
    action: str
    target: str


@dataclass
class Sla:
    duration: str
    calendar: str = "calendar"
    escalations: list[Escalation] = field(default_factory=list)


@dataclass
class Action:
    name: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Timer:
    """kind: "duration" (timeDuration), "date" (timeDate), "cycle" (timeCycle, refused by
    `validate`) or "" (an empty definition). `id` is the definition element's id."""

    kind: str
    value: str = ""
    id: str = ""


@dataclass
class MessageTrigger:
    """A messageEventDefinition: `message_ref` is the id of a bpmn:message in `Graph.messages`."""

    message_ref: str = ""
    id: str = ""


@dataclass
class Node:
    id: str
    type: NodeType
    name: str = ""
    documentation: str | None = None
    # Our extension settings (jw:…)
    assignments: list[Assignment] = field(default_factory=list)
    form: Form | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    sla: Sla | None = None
    action: Action | None = None
    # BPMN settings of particular node types
    timer: Timer | None = None  # intermediateCatchEvent (timer), boundaryEvent
    message: MessageTrigger | None = None  # intermediateCatchEvent (message)
    attached_to: str = ""  # boundaryEvent: attachedToRef
    cancel_activity: bool = True  # boundaryEvent: False = non-interrupting
    called_element: str = ""  # callActivity
    # Kept for the round trip
    attrs: dict[str, str] = field(default_factory=dict)  # other attributes, Clark names
    extensions: list[XmlElement] = field(default_factory=list)  # other extension elements

    @property
    def is_approval(self) -> bool:
        return self.type == "userTask" and bool(self.outcomes)

    @property
    def assignment(self) -> Assignment | None:
        """The first assignment rule (the only one in most definitions)."""
        return self.assignments[0] if self.assignments else None


@dataclass
class Flow:
    id: str
    source: str
    target: str
    name: str = ""
    condition: str | None = None  # conditionExpression text, stripped; None = no condition
    condition_language: str = ""
    is_default: bool = False  # the source's `default` attribute names this flow
    documentation: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    extensions: list[XmlElement] = field(default_factory=list)


@dataclass
class Message:
    id: str
    name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Bounds:
    x: float
    y: float
    width: float
    height: float


@dataclass
class Label:
    bounds: Bounds | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Shape:
    id: str
    element: str  # bpmnElement
    bounds: Bounds
    label: Label | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # isMarkerVisible, bioc:stroke, …


@dataclass
class Edge:
    id: str
    element: str
    waypoints: list[tuple[float, float]] = field(default_factory=list)
    label: Label | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Diagram:
    id: str
    plane_id: str
    plane_element: str
    shapes: list[Shape] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    plane_attrs: dict[str, str] = field(default_factory=dict)
    extras: list[XmlElement] = field(default_factory=list)  # e.g. bpmndi:BPMNLabelStyle


@dataclass
class Graph:
    process_id: str
    process_name: str = ""
    nodes: list[Node] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    diagrams: list[Diagram] = field(default_factory=list)
    is_executable: bool = True
    documentation: str | None = None
    definitions_id: str = "Definitions_1"
    target_namespace: str = DEFAULT_TARGET_NAMESPACE
    definitions_attrs: dict[str, str] = field(default_factory=dict)  # exporter, …
    process_attrs: dict[str, str] = field(default_factory=dict)
    process_extensions: list[XmlElement] = field(default_factory=list)
    process_extras: list[XmlElement] = field(default_factory=list)  # lanes, annotations
    root_extras: list[XmlElement] = field(default_factory=list)  # collaboration, signals, …
    namespaces: dict[str, str] = field(default_factory=dict)  # prefix → URI, non-standard ones
    unsupported: list[UnsupportedElement] = field(default_factory=list)
    issues: list[Problem] = field(default_factory=list)  # found while reading

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def outgoing(self, node_id: str) -> list[Flow]:
        return [f for f in self.flows if f.source == node_id]

    def incoming(self, node_id: str) -> list[Flow]:
        return [f for f in self.flows if f.target == node_id]

    def boundaries(self, activity_id: str) -> list[Node]:
        return [n for n in self.nodes if n.type == "boundaryEvent" and n.attached_to == activity_id]


# --------------------------------------------------------------------------------------------
# Durations and dates

_DURATION_RE = re.compile(
    r"P(?=\d|T\d)(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """`PnDTnHnMnS` → timedelta; ValueError for anything else (years, months, weeks included)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    parts = {k: float(v.replace(",", ".")) for k, v in match.groupdict().items() if v}
    try:
        return timedelta(**parts)
    except OverflowError as exc:
        raise ValueError(text) from exc


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time with an offset; ValueError when naive or malformed."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(text)
    return value


def _duration_problem(text: str) -> str | None:
    if not text.strip():
        return "时长为空"
    try:
        parse_duration(text)
    except ValueError:
        if re.fullmatch(r"P.*[YW].*|P(\d+M).*", text.strip()):
            return f"时长 {text} 含年、月或周，长度不固定，请换算成天（如 P30D）"
        return f"时长 {text} 不是 ISO 8601 格式（如 PT2H、P1DT4H、PT30M）"
    return None


# --------------------------------------------------------------------------------------------
# Reading


def _b(local: str) -> str:
    return f"{{{BPMN_NS}}}{local}"


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        return uri, local
    return "", tag


def _local(tag: str) -> str:
    return _split(tag)[1]


def _is_bpmn(tag: str) -> bool:
    return tag.startswith(f"{{{BPMN_NS}}}")


def _is_jw(tag: str) -> bool:
    return tag.startswith(f"{{{JW_NS}}}")


def _short(tag: str, namespaces: dict[str, str] | None = None) -> str:
    """`{BPMN}scriptTask` → "bpmn:scriptTask" for messages."""
    uri, local = _split(tag)
    prefix = STANDARD_PREFIXES.get(uri)
    if prefix is None and namespaces:
        prefix = next((p for p, u in namespaces.items() if u == uri), None)
    if prefix is None:
        return tag
    return f"{prefix}:{local}"


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
    """Read a BPMN 2.0 file (see the module docstring)."""
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


# --------------------------------------------------------------------------------------------
# Writing


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
    """The graph as a BPMN 2.0 file (see the module docstring)."""
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


# --------------------------------------------------------------------------------------------
# Layout for nodes and flows the diagram does not draw yet

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


# --------------------------------------------------------------------------------------------
# Validation


def _label(node: Node) -> str:
    if node.name:
        return f"「{node.name}」({node.id})" if node.id else f"「{node.name}」"
    return node.id


def _has_condition(flow: Flow) -> bool:
    return bool(flow.condition and flow.condition.strip())


def _flow_label(flow: Flow) -> str:
    if flow.name:
        return f"「{flow.name}」({flow.id})" if flow.id else f"「{flow.name}」"
    return flow.id


def load_bpmn(
    data: bytes | str,
    *,
    known_form_keys: set[str] | None = None,
    known_actions: set[str] | None = None,
    check_expression: Callable[[str], str | None] | None = None,
    known_processes: set[str] | None = None,
) -> Graph:
    """Parse and validate; `BpmnInvalid` with every problem unless the definition is clean."""
    graph = parse_bpmn(data)
    problems = validate(
        graph,
        known_form_keys=known_form_keys,
        known_actions=known_actions,
        check_expression=check_expression,
        known_processes=known_processes,
    )
    if problems:
        raise BpmnInvalid(problems)
    return graph


def validate(
    graph: Graph,
    *,
    known_form_keys: set[str] | None = None,
    known_actions: set[str] | None = None,
    check_expression: Callable[[str], str | None] | None = None,
    known_processes: set[str] | None = None,
) -> list[Problem]:
    """Every problem that keeps the engine from running `graph` (see the module docstring)."""
    checker = _Validator(graph, known_form_keys, known_actions, check_expression, known_processes)
    checker.run()
    seen: set[Problem] = set()
    result = []
    for problem in checker.problems:
        if problem not in seen:
            seen.add(problem)
            result.append(problem)
    return result


class _Validator:
    def __init__(
        self,
        graph: Graph,
        known_form_keys: set[str] | None,
        known_actions: set[str] | None,
        check_expression: Callable[[str], str | None] | None,
        known_processes: set[str] | None,
    ) -> None:
        self.g = graph
        self.forms = known_form_keys
        self.actions = known_actions
        self.check_expression = check_expression
        self.processes = known_processes
        self.problems: list[Problem] = []
        self.nodes: dict[str, Node] = {}
        for n in graph.nodes:
            self.nodes.setdefault(n.id, n)
        self.unsupported_ids = {u.element_id for u in graph.unsupported if u.element_id}
        self.out: dict[str, list[Flow]] = {}
        self.inc: dict[str, list[Flow]] = {}
        for f in graph.flows:
            self.out.setdefault(f.source, []).append(f)
            self.inc.setdefault(f.target, []).append(f)

    def add(self, element_id: str, code: str, message: str) -> None:
        self.problems.append(Problem(element_id, code, message))

    def run(self) -> None:
        for u in self.g.unsupported:
            name = _TAG_NAMES.get(u.tag.split(":")[-1], u.tag)
            where = f"元素 {u.element_id}" if u.element_id else "一个没有 id 的元素"
            if u.detail:
                part = _TAG_NAMES.get(u.detail.split(":")[-1], u.detail)
                what = f"带「{part}」的{name}（{u.tag} 含 {u.detail}）"
            elif u.tag.endswith(("Event", "EventDefinition")) and name != u.tag:
                what = f"没有事件定义的{name}（{u.tag}）"
            else:
                what = f"{name}（{u.tag}）" if name != u.tag else u.tag
            self.add(u.element_id, "unsupported", f"{where}：不支持{what}")
        self.problems.extend(self.g.issues)
        self.ids()
        self.starts_and_ends()
        self.flows()
        for node in self.g.nodes:
            self.node(node)
        self.gateways()
        self.expressions()
        self.reachability()
        self.token_game()

    def ids(self) -> None:
        seen: set[str] = set()
        labelled = [(n.id, _label(n)) for n in self.g.nodes]
        labelled += [(f.id, _flow_label(f)) for f in self.g.flows]
        for element_id, what in labelled:
            if not element_id:
                self.add("", "id_missing", f"元素 {what or '（无名称）'} 缺少 id")
            elif element_id in seen:
                self.add(element_id, "duplicate_id", f"id {element_id} 被多个元素使用")
            seen.add(element_id)

    def starts_and_ends(self) -> None:
        starts = [n for n in self.g.nodes if n.type == "startEvent"]
        if not starts:
            self.add(self.g.process_id, "start_missing", "流程没有开始事件")
        elif len(starts) > 1:
            for n in starts:
                self.add(n.id, "start_multiple", f"流程只能有一个开始事件，{_label(n)} 是多余的")
        if not any(n.type == "endEvent" for n in self.g.nodes):
            self.add(self.g.process_id, "end_missing", "流程没有结束事件")

    def flows(self) -> None:
        for f in self.g.flows:
            if f.source not in self.nodes and f.source not in self.unsupported_ids:
                self.add(
                    f.id,
                    "flow_source_missing",
                    f"连线 {_flow_label(f)} 的起点 {f.source or '（空）'} 不存在",
                )
            if f.target not in self.nodes and f.target not in self.unsupported_ids:
                self.add(
                    f.id,
                    "flow_target_missing",
                    f"连线 {_flow_label(f)} 的终点 {f.target or '（空）'} 不存在",
                )

    def node(self, n: Node) -> None:
        label = _label(n)
        incoming, outgoing = self.inc.get(n.id, []), self.out.get(n.id, [])
        if n.type == "startEvent" and incoming:
            self.add(n.id, "start_has_incoming", f"开始事件 {label} 不能有入线")
        if n.type == "endEvent" and outgoing:
            self.add(n.id, "end_has_outgoing", f"结束事件 {label} 不能有出线")
        if n.type == "boundaryEvent":
            host = self.nodes.get(n.attached_to)
            if incoming:
                self.add(n.id, "boundary_has_incoming", f"边界事件 {label} 不能有入线")
            if host is None:
                if n.attached_to not in self.unsupported_ids or not n.attached_to:
                    self.add(
                        n.id,
                        "boundary_target_missing",
                        f"边界事件 {label} 附着的活动 {n.attached_to or '（空）'} 不存在",
                    )
            elif host.type not in ACTIVITY_TYPES:
                self.add(
                    n.id,
                    "boundary_target_invalid",
                    f"边界事件 {label} 只能附着在任务或调用活动上，不能附着在 {_label(host)} 上",
                )
        if "Gateway" not in n.type and len(outgoing) > 1:
            self.add(
                n.id,
                "implicit_split",
                f"{label} 有 {len(outgoing)} 条出线：分支请用排他网关或并行网关",
            )
        if n.type == "serviceTask" and (n.action is None or not n.action.name):
            self.add(n.id, "action_missing", f"自动任务 {label} 没有设置要执行的动作")
        if (
            n.action is not None
            and n.action.name
            and self.actions is not None
            and n.action.name not in self.actions
        ):
            self.add(n.id, "action_unknown", f"{label} 的动作 {n.action.name} 不存在")
        if n.form is not None:
            if not n.form.key:
                self.add(n.id, "form_invalid", f"{label} 的表单没有填写 key")
            elif self.forms is not None and n.form.key not in self.forms:
                self.add(n.id, "form_unknown", f"{label} 的表单 {n.form.key} 不存在")
        if n.timer is not None:
            self.timer(n)
        if n.type == "intermediateCatchEvent" and n.message is not None:
            message = next((m for m in self.g.messages if m.id == n.message.message_ref), None)
            if not n.message.message_ref:
                self.add(n.id, "message_invalid", f"消息事件 {label} 没有选择消息")
            elif message is None:
                self.add(
                    n.id,
                    "message_invalid",
                    f"消息事件 {label} 引用的消息 {n.message.message_ref} 不存在",
                )
            elif not message.name:
                self.add(
                    n.id, "message_invalid", f"消息事件 {label} 引用的消息 {message.id} 没有名称"
                )
        if n.type == "callActivity":
            if not n.called_element:
                self.add(n.id, "call_invalid", f"调用活动 {label} 没有填写被调用流程")
            elif n.called_element == self.g.process_id:
                self.add(n.id, "call_invalid", f"调用活动 {label} 不能调用流程自身")
            elif self.processes is not None and n.called_element not in self.processes:
                self.add(
                    n.id, "call_unknown", f"调用活动 {label} 调用的流程 {n.called_element} 不存在"
                )
        self.assignments(n)
        self.outcomes(n)
        if n.sla is not None:
            self.sla(n, n.sla)
        self.placement(n)

    def timer(self, n: Node) -> None:
        timer = n.timer
        assert timer is not None
        label = _label(n)
        if timer.kind == "":
            self.add(n.id, "timer_invalid", f"定时器 {label} 没有设置时长或时间")
        elif timer.kind == "cycle":
            self.add(
                n.id, "timer_invalid", f"定时器 {label} 使用了循环（timeCycle），只支持时长或时间点"
            )
        elif timer.kind == "duration":
            error = _duration_problem(timer.value)
            if error:
                self.add(n.id, "timer_invalid", f"定时器 {label}：{error}")
        else:
            try:
                parse_datetime(timer.value)
            except ValueError:
                self.add(
                    n.id,
                    "timer_invalid",
                    f"定时器 {label} 的时间 {timer.value or '（空）'} 应为带时区的 ISO 8601 时间，如 2025-06-01T09:00:00+08:00",
                )

    def assignments(self, n: Node) -> None:
        label = _label(n)
        for i, a in enumerate(n.assignments):
            if a.rule not in ASSIGNMENT_RULES:
                self.add(
                    n.id, "assignment_invalid", f"{label} 的分配规则 {a.rule or '（空）'} 不存在"
                )
            elif a.rule in ROLE_RULES and not a.role:
                self.add(n.id, "assignment_invalid", f"{label} 按角色分配时必须填写角色")
            elif a.rule == "user" and not a.user:
                self.add(n.id, "assignment_invalid", f"{label} 指定人员时必须填写人员")
            elif a.rule == "field" and not a.field:
                self.add(n.id, "assignment_invalid", f"{label} 按表单字段分配时必须填写字段")
            if a.scope not in ASSIGNMENT_SCOPES:
                self.add(
                    n.id,
                    "assignment_invalid",
                    f"{label} 的分配范围 {a.scope} 无效（region 或 department）",
                )
            if not a.when and i < len(n.assignments) - 1:
                self.add(
                    n.id,
                    "assignment_invalid",
                    f"{label} 的第 {i + 1} 条分配规则没有条件，后面的规则永远不会生效",
                )

    def outcomes(self, n: Node) -> None:
        seen: set[str] = set()
        for o in n.outcomes:
            if not o.id:
                self.add(n.id, "outcome_invalid", f"{_label(n)} 有审批结果缺少 id")
            elif o.id in seen:
                self.add(n.id, "outcome_invalid", f"{_label(n)} 的审批结果 {o.id} 重复")
            seen.add(o.id)

    def sla(self, n: Node, sla: Sla) -> None:
        label = _label(n)
        error = _duration_problem(sla.duration)
        if error:
            self.add(n.id, "sla_invalid", f"{label} 的时限：{error}")
        if sla.calendar not in SLA_CALENDARS:
            self.add(
                n.id,
                "sla_invalid",
                f"{label} 的时限日历 {sla.calendar or '（空）'} 无效（working 或 calendar）",
            )
        previous = timedelta(0)
        for i, e in enumerate(sla.escalations, start=1):
            error = _duration_problem(e.after)
            if error:
                self.add(n.id, "sla_invalid", f"{label} 的第 {i} 级升级：{error}")
            else:
                after = parse_duration(e.after)
                if after < previous:
                    self.add(
                        n.id,
                        "sla_invalid",
                        f"{label} 的第 {i} 级升级早于上一级，升级步骤须按时间先后排列",
                    )
                previous = after
            if e.action not in ESCALATION_ACTIONS:
                self.add(
                    n.id,
                    "sla_invalid",
                    f"{label} 的第 {i} 级升级动作 {e.action or '（空）'} 无效（remind、reassign 或 alert）",
                )
            role = e.target.removeprefix("role:")
            if e.target not in ESCALATION_TARGETS and not (
                e.target.startswith("role:") and role.strip()
            ):
                self.add(
                    n.id,
                    "sla_invalid",
                    f"{label} 的第 {i} 级升级对象 {e.target or '（空）'} 无效（assignee、supervisor、manager 或 role:角色名）",
                )

    def placement(self, n: Node) -> None:
        label = _label(n)
        allowed = {
            "assignment": n.type == "userTask",
            "form": n.type in ("userTask", "startEvent"),
            "outcomes": n.type == "userTask",
            "sla": n.type in ("userTask", "callActivity")
            or (n.type == "intermediateCatchEvent" and n.message is not None),
            "action": n.type == "serviceTask",
        }
        present = {
            "assignment": bool(n.assignments),
            "form": n.form is not None,
            "outcomes": bool(n.outcomes),
            "sla": n.sla is not None,
            "action": n.action is not None,
        }
        for what, here in present.items():
            if here and not allowed[what]:
                self.add(n.id, "extension_misplaced", f"{label} 不能设置 jw:{what}")
        for x in n.extensions:
            if _is_jw(x.tag):
                self.add(
                    n.id,
                    "extension_unknown",
                    f"{label} 含有未知或重复的扩展元素 jw:{_local(x.tag)}",
                )
        for f in self.g.flows:
            for x in f.extensions:
                if _is_jw(x.tag):
                    self.add(
                        f.id,
                        "extension_unknown",
                        f"连线 {_flow_label(f)} 含有未知的扩展元素 jw:{_local(x.tag)}",
                    )

    def gateways(self) -> None:
        for source, flows in self.out.items():
            node = self.nodes.get(source)
            defaults = [f for f in flows if f.is_default]
            exclusive = node is not None and node.type == "exclusiveGateway"
            for f in defaults:
                if not exclusive:
                    self.add(
                        f.id,
                        "default_not_allowed",
                        f"只有排他网关可以设置默认路径，连线 {_flow_label(f)} 不行",
                    )
                elif _has_condition(f):
                    self.add(
                        f.id, "default_with_condition", f"默认路径 {_flow_label(f)} 不应再带条件"
                    )
            if len(defaults) > 1:
                self.add(source, "default_multiple", f"节点 {source} 有多条默认路径")
            for f in flows:
                if _has_condition(f) and not exclusive:
                    self.add(
                        f.id,
                        "condition_not_allowed",
                        f"连线 {_flow_label(f)} 带有条件，但只有排他网关的出线可以带条件",
                    )
            if node is not None and exclusive and len(flows) > 1:
                for f in flows:
                    if not f.is_default and not _has_condition(f):
                        self.add(
                            f.id,
                            "condition_missing",
                            f"排他网关 {_label(node)} 的出线 {_flow_label(f)} 没有条件，也不是默认路径",
                        )

    def expressions(self) -> None:
        if self.check_expression is None:
            return
        for f in self.g.flows:
            if f.condition is not None and _has_condition(f):
                error = self.safe_check(f.condition)
                if error:
                    self.add(
                        f.id,
                        "expression_invalid",
                        f"连线 {_flow_label(f)} 的条件 {f.condition} 有误：{error}",
                    )
        for n in self.g.nodes:
            for a in n.assignments:
                if a.when:
                    error = self.safe_check(a.when)
                    if error:
                        self.add(
                            n.id,
                            "expression_invalid",
                            f"{_label(n)} 的分配条件 {a.when} 有误：{error}",
                        )

    def safe_check(self, text: str) -> str | None:
        assert self.check_expression is not None
        try:
            return self.check_expression(text)
        except Exception as exc:  # a checker that raises still names the expression as bad
            return str(exc) or type(exc).__name__

    def successors(self) -> dict[str, set[str]]:
        succ: dict[str, set[str]] = {}
        for f in self.g.flows:
            succ.setdefault(f.source, set()).add(f.target)
        for n in self.g.nodes:
            if n.type == "boundaryEvent" and n.attached_to:
                succ.setdefault(n.attached_to, set()).add(n.id)
        return succ

    @staticmethod
    def closure(starts: Iterable[str], succ: dict[str, set[str]]) -> set[str]:
        seen = set(starts)
        queue = deque(seen)
        while queue:
            for nxt in succ.get(queue.popleft(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def reachability(self) -> None:
        succ = self.successors()
        starts = [n.id for n in self.g.nodes if n.type == "startEvent"]
        if starts:
            reached = self.closure(starts, succ)
            for n in self.g.nodes:
                if n.id not in reached:
                    self.add(n.id, "unreachable", f"{_label(n)} 从开始事件无法到达")
        dead = set()
        for n in self.g.nodes:
            if n.type != "endEvent" and not self.out.get(n.id):
                dead.add(n.id)
                self.add(n.id, "dead_end", f"{_label(n)} 没有出线，流程会停在这里")
        ends = {n.id for n in self.g.nodes if n.type == "endEvent"}
        if not ends:
            return
        pred: dict[str, set[str]] = {}
        for source, targets in succ.items():
            for target in targets:
                pred.setdefault(target, set()).add(source)
        # A node that only reaches a dead end is reported there; a loop with no way out here.
        finishing = self.closure(ends | dead | self.unsupported_ids, pred)
        for n in self.g.nodes:
            if n.id not in finishing:
                self.add(
                    n.id, "no_path_to_end", f"{_label(n)} 之后无论怎么走都到不了结束事件（死循环）"
                )

    def token_game(self) -> None:
        """Play the flow as a token game with every exclusive choice open (and boundary timers
        firing or not). A state where tokens remain but nothing can move means a parallel join
        waits for a branch that never comes; two tokens on one flow mean branches that were
        forked in parallel meet without a parallel join, so what follows runs twice."""
        starts = [n for n in self.g.nodes if n.type == "startEvent"]
        if len(starts) != 1 or self.unsupported_ids:
            return
        flows = [f for f in self.g.flows if f.source in self.nodes and f.target in self.nodes]
        out: dict[str, list[int]] = {}
        inc: dict[str, list[int]] = {}
        for i, f in enumerate(flows):
            out.setdefault(f.source, []).append(i)
            inc.setdefault(f.target, []).append(i)
        hosts: dict[str, list[Node]] = {}
        for n in self.g.nodes:
            if n.type == "boundaryEvent":
                hosts.setdefault(n.attached_to, []).append(n)

        def options(node: Node) -> list[list[int]]:
            outs = out.get(node.id, [])
            if node.type == "exclusiveGateway":
                return [[i] for i in outs] or [[]]
            if node.type == "endEvent":
                return [[]]
            result = [outs]
            for b in hosts.get(node.id, []):
                extra = out.get(b.id, [])
                result.append(extra if b.cancel_activity else outs + extra)
            return result

        choices = {n.id: options(n) for n in self.g.nodes}
        target_of = [self.nodes[f.target] for f in flows]

        def moves(marking: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
            joined: set[str] = set()
            for i, count in enumerate(marking):
                if not count:
                    continue
                node = target_of[i]
                if node.type == "parallelGateway":
                    ins = inc[node.id]
                    if node.id in joined or not all(marking[j] for j in ins):
                        continue
                    joined.add(node.id)
                    m = list(marking)
                    for j in ins:
                        m[j] -= 1
                    for j in out.get(node.id, []):
                        m[j] += 1
                    yield tuple(m)
                    continue
                for produced in choices[node.id]:
                    m = list(marking)
                    m[i] -= 1
                    for j in produced:
                        m[j] += 1
                    yield tuple(m)

        initial = [0] * len(flows)
        for i in out.get(starts[0].id, []):
            initial[i] += 1
        first = tuple(initial)
        seen = {first}
        queue = deque([first])
        stuck: set[str] = set()
        doubled: set[str] = set()
        while queue and len(seen) < _TOKEN_GAME_LIMIT:
            marking = queue.popleft()
            moved = False
            for nxt in moves(marking):
                moved = True
                over = [flows[i].target for i, c in enumerate(nxt) if c > 1]
                if over:
                    doubled.update(over)
                    continue
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
            if not moved and any(marking):
                stuck.update(
                    flows[i].target
                    for i, c in enumerate(marking)
                    if c and self.nodes[flows[i].target].type == "parallelGateway"
                )
        for node_id in sorted(stuck):
            self.add(
                node_id,
                "parallel_deadlock",
                f"并行网关 {_label(self.nodes[node_id])} 可能永远等不齐所有入线（某条分支可能不会到达，例如来自排他分支或被边界事件中断），流程会卡住",
            )
        for node_id in sorted(doubled):
            self.add(
                node_id,
                "parallel_unsynchronized",
                f"{_label(self.nodes[node_id])} 可能同时收到多个并行分支（未经并行网关汇合），会被重复执行",
            )
