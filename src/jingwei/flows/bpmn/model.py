"""The BPMN graph as plain dataclasses (`Graph`, `Node`, `Flow`, the diagram…), the errors
(`BpmnError`, `BpmnInvalid`), the namespaces and other constants, the ISO 8601 duration and
date parsers, and the small tag and label helpers the reader, writer and validator share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

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
# The reader looks this up on the package at each call, so `bpmn.MAX_BPMN_BYTES = n` applies.
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


# --------------------------------------------------------------------------------------------
# Tags and labels


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


def _label(node: Node) -> str:
    if node.name:
        return f"「{node.name}」({node.id})" if node.id else f"「{node.name}」"
    return node.id


def _flow_label(flow: Flow) -> str:
    if flow.name:
        return f"「{flow.name}」({flow.id})" if flow.id else f"「{flow.name}」"
    return flow.id
