"""BPMN 2.0 files in and out: parse a definition into plain dataclasses, check it against the subset
the engine runs, and write it back so that bpmn-js (and any other BPMN tool) opens it again with
its layout intact. No database, no Django: the engine compiles a `Graph` into its own spec.

The package splits this by responsibility: `model` (the dataclasses, errors, constants, duration
and date parsing), `reader` (`parse_bpmn`, with the XML defences), `writer` (`export_bpmn`),
`layout` (`ensure_layout`) and `validation` (`validate`, `load_bpmn`). Import from the package:
every public name is re-exported here.

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
                   target="assignee|supervisor|manager|role:<name>|duty:<roster>"/>
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

from .layout import ensure_layout
from .model import (
    ACTIVITY_TYPES,
    ASSIGNMENT_RULES,
    ASSIGNMENT_SCOPES,
    BPMN_NS,
    BPMNDI_NS,
    BUILTIN_ACTIONS,
    DC_NS,
    DEFAULT_TARGET_NAMESPACE,
    DI_NS,
    ESCALATION_ACTIONS,
    ESCALATION_TARGETS,
    JW_NS,
    MAX_BPMN_BYTES,
    NODE_TYPES,
    ROLE_RULES,
    SLA_CALENDARS,
    STANDARD_PREFIXES,
    TIMER_KINDS,
    XML_NS,
    XSI_NS,
    Action,
    Assignment,
    Bounds,
    BpmnError,
    BpmnInvalid,
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
    NodeType,
    Outcome,
    Problem,
    Shape,
    Sla,
    Timer,
    UnsupportedElement,
    XmlElement,
    parse_datetime,
    parse_duration,
)
from .reader import parse_bpmn
from .validation import load_bpmn, validate
from .writer import export_bpmn

__all__ = [
    "ACTIVITY_TYPES",
    "ASSIGNMENT_RULES",
    "ASSIGNMENT_SCOPES",
    "BPMNDI_NS",
    "BPMN_NS",
    "BUILTIN_ACTIONS",
    "DC_NS",
    "DEFAULT_TARGET_NAMESPACE",
    "DI_NS",
    "ESCALATION_ACTIONS",
    "ESCALATION_TARGETS",
    "JW_NS",
    "MAX_BPMN_BYTES",
    "NODE_TYPES",
    "ROLE_RULES",
    "SLA_CALENDARS",
    "STANDARD_PREFIXES",
    "TIMER_KINDS",
    "XML_NS",
    "XSI_NS",
    "Action",
    "Assignment",
    "Bounds",
    "BpmnError",
    "BpmnInvalid",
    "Diagram",
    "Edge",
    "Escalation",
    "Flow",
    "Form",
    "Graph",
    "Label",
    "Message",
    "MessageTrigger",
    "Node",
    "NodeType",
    "Outcome",
    "Problem",
    "Shape",
    "Sla",
    "Timer",
    "UnsupportedElement",
    "XmlElement",
    "ensure_layout",
    "export_bpmn",
    "load_bpmn",
    "parse_bpmn",
    "parse_datetime",
    "parse_duration",
    "validate",
]
