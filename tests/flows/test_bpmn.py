"""BPMN import, export and validation (jingwei.flows.bpmn): no database.

What is proved here:
- the shipped fixtures read, validate clean and survive import → export → import unchanged, and
  the exported document is the same XML tree as the file (diagram, lanes, vendor extensions);
- a Camunda Modeler file imports; a file with unsupported elements is refused naming each one;
- unreadable input (malformed, not BPMN, several processes, XML bombs, XXE) is a BpmnError;
- every validation rule fires on a minimal breach of a definition that is otherwise clean;
- random graphs of supported nodes round-trip (hypothesis), and no input crashes the reader.
"""

from __future__ import annotations

import copy
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.flows import bpmn
from jingwei.flows.bpmn import (
    BUILTIN_ACTIONS,
    Action,
    Assignment,
    BpmnError,
    BpmnInvalid,
    Escalation,
    Flow,
    Form,
    Graph,
    Message,
    MessageTrigger,
    Node,
    Outcome,
    Sla,
    Timer,
    XmlElement,
    ensure_layout,
    export_bpmn,
    load_bpmn,
    parse_bpmn,
    parse_datetime,
    parse_duration,
    validate,
)

FIXTURES = Path(__file__).parent / "fixtures"
ROUND_TRIP_FIXTURES = [
    "simple_linear.bpmn",
    "after_sales_sop.bpmn",
    "approval_by_amount.bpmn",
    "camunda_leave_request.bpmn",
]
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
BPMNDI = "{http://www.omg.org/spec/BPMN/20100524/DI}"

HYPOTHESIS = settings(
    max_examples=int(os.environ.get("BPMN_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def tree(el: ET.Element) -> tuple[Any, ...]:
    """An element as comparable data: tag, attributes, stripped text, children in order."""
    return (
        el.tag,
        dict(el.attrib),
        (el.text or "").strip(),
        [tree(child) for child in el],
    )


def codes(problems: list[bpmn.Problem]) -> set[tuple[str, str]]:
    return {(p.code, p.element_id) for p in problems}


_SIMPLE_EXPR = re.compile(r'\s*(\w+)\s*(<=|>=|==|!=|<|>)\s*("[^"]*"|-?\d+(?:\.\d+)?)\s*')


def check_simple_expression(text: str) -> str | None:
    """Stands in for the engine's CEL check: `name op literal` only."""
    return None if _SIMPLE_EXPR.fullmatch(text) else f"无法解析：{text}"


def evaluate_simple(text: str, data: dict[str, Any]) -> bool:
    match = _SIMPLE_EXPR.fullmatch(text)
    assert match, text
    name, op, literal = match.groups()
    right: Any = literal[1:-1] if literal.startswith('"') else float(literal)
    left = data[name]
    return {
        "<=": left <= right,
        ">=": left >= right,
        "<": left < right,
        ">": left > right,
        "==": left == right,
        "!=": left != right,
    }[op]


def walk(
    graph: Graph, data: dict[str, Any], outcomes: dict[str, str], max_tasks: int = 50
) -> list[str]:
    """Follow the happy path of a flow without parallel splits: the user tasks visited in order,
    `outcomes` giving each approval's answer, exclusive gateways evaluated on `data`."""
    node = next(n for n in graph.nodes if n.type == "startEvent")
    visited: list[str] = []
    for _ in range(100):
        if node.type == "endEvent":
            visited.append(node.id)
            return visited
        if node.type == "userTask":
            visited.append(node.id)
            if len(visited) == max_tasks:
                return visited
            data = {**data, "outcome": outcomes.get(node.id, "approve")}
        flows = graph.outgoing(node.id)
        if node.type == "exclusiveGateway" and len(flows) > 1:
            chosen = [f for f in flows if f.condition and evaluate_simple(f.condition, data)]
            chosen = chosen or [f for f in flows if f.is_default]
            assert len(chosen) == 1, (node.id, chosen)
            flow = chosen[0]
        else:  # a parallel fork: the branches meet again at the join, follow the first
            assert len(flows) == 1 or node.type == "parallelGateway", node.id
            flow = flows[0]
        nxt = graph.node(flow.target)
        assert nxt is not None
        node = nxt
    raise AssertionError("loop")


# --------------------------------------------------------------------------------------------
# Round trip of the fixtures


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_fixture_survives_import_export_import(name: str) -> None:
    graph = parse_bpmn(read(name))
    exported = export_bpmn(graph)

    again = parse_bpmn(exported)

    assert again == graph
    assert export_bpmn(again) == exported  # stable: a second export changes nothing


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_exported_document_is_the_same_xml_tree_as_the_file(name: str) -> None:
    # Diagram (shapes, edges, bounds, waypoints, labels, colours), lanes, pools, annotations,
    # camunda extensions, documentation and unknown attributes: all written back as they were.
    original = ET.fromstring(read(name))

    exported = ET.fromstring(export_bpmn(parse_bpmn(read(name))).encode())

    assert tree(exported) == tree(original)


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_diagram_layout_is_kept(name: str) -> None:
    original = ET.fromstring(read(name)).find(f"{BPMNDI}BPMNDiagram")
    assert original is not None

    exported = ET.fromstring(export_bpmn(parse_bpmn(read(name))).encode()).find(
        f"{BPMNDI}BPMNDiagram"
    )

    assert exported is not None
    assert tree(exported) == tree(original)


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_fixture_validates_clean(name: str) -> None:
    graph = parse_bpmn(read(name))

    problems = validate(graph, known_actions=set(BUILTIN_ACTIONS))

    assert problems == []


@pytest.mark.parametrize("name", ["after_sales_sop.bpmn", "approval_by_amount.bpmn"])
def test_business_fixture_conditions_are_cel(name: str) -> None:
    celpy = pytest.importorskip("celpy")
    env = celpy.Environment()

    def check(text: str) -> str | None:
        try:
            env.compile(text)
        except Exception as exc:
            return str(exc)
        return None

    graph = load_bpmn(
        read(name),
        known_actions=set(BUILTIN_ACTIONS),
        check_expression=check,
        known_form_keys={"after_sales", "expense_request"},
    )
    assert any(f.condition for f in graph.flows)


def test_export_is_valid_bpmn_for_bpmn_js() -> None:
    graph = parse_bpmn(read("after_sales_sop.bpmn"))

    root = ET.fromstring(export_bpmn(graph).encode())

    assert root.tag == f"{B}definitions"
    assert root.get("targetNamespace") == "http://jingwei.example/flows"
    assert root.get("id") == "Definitions_AfterSalesSop"
    handle = root.find(f"{B}process/{B}userTask[@id='Task_Handle']")
    assert handle is not None
    assert [e.text for e in handle.findall(f"{B}incoming")] == ["Flow_ToHandle", "Flow_Rework"]
    assert [e.text for e in handle.findall(f"{B}outgoing")] == ["Flow_ToInspect"]
    gateway = root.find(f"{B}process/{B}exclusiveGateway[@id='Gateway_Inspect']")
    assert gateway is not None and gateway.get("default") == "Flow_Accepted"
    text = export_bpmn(graph)
    for prefix, uri in [
        ("bpmn", "http://www.omg.org/spec/BPMN/20100524/MODEL"),
        ("bpmndi", "http://www.omg.org/spec/BPMN/20100524/DI"),
        ("dc", "http://www.omg.org/spec/DD/20100524/DC"),
        ("di", "http://www.omg.org/spec/DD/20100524/DI"),
        ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ("jw", "http://jingwei.example/schema/bpmn"),
    ]:
        assert f'xmlns:{prefix}="{uri}"' in text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions ')
    assert '<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">' in text


# --------------------------------------------------------------------------------------------
# What the business fixtures say


def test_after_sales_sop_runs_the_seven_steps_with_rework_loop() -> None:
    graph = parse_bpmn(read("after_sales_sop.bpmn"))
    by_name = {n.name: n for n in graph.nodes}
    steps = ["受理", "派单", "处理", "验收", "回访", "结算", "归档"]
    assert all(step in by_name for step in steps)
    assert graph.process_id == "after_sales_sop"

    # The main path visits the steps in SOP order (parallel fork after 派单 collapsed).
    order: list[str] = []
    node = by_name["受理"]
    while node.type != "endEvent":
        if node.name in steps:
            order.append(node.name)
        flows = graph.outgoing(node.id)
        flow = next((f for f in flows if f.is_default), flows[0])
        if node.type == "parallelGateway" and len(flows) > 1:
            join = graph.node(graph.outgoing(flow.target)[0].target)
            assert join is not None and join.type == "parallelGateway"
            node = join
            continue
        nxt = graph.node(flow.target)
        assert nxt is not None
        node = nxt
    assert order == steps

    # After 验收: an exclusive gateway back to 处理 on rejection, on to 扣减备件 by default.
    inspect = by_name["验收"]
    assert inspect.is_approval
    assert [o.id for o in inspect.outcomes] == ["approve", "reject"]
    gateway = graph.node(graph.outgoing(inspect.id)[0].target)
    assert gateway is not None and gateway.type == "exclusiveGateway"
    rework = next(f for f in graph.outgoing(gateway.id) if not f.is_default)
    assert rework.target == by_name["处理"].id
    assert rework.condition == 'outcome == "reject"'
    assert walk(graph, {"priority": "normal"}, {inspect.id: "reject"}, max_tasks=5) == [
        "Task_Accept",
        "Task_Dispatch",
        "Task_Handle",
        "Task_Inspect",
        "Task_Handle",
    ]


def test_after_sales_dispatch_has_sla_with_three_escalation_steps() -> None:
    graph = parse_bpmn(read("after_sales_sop.bpmn"))
    dispatch = graph.node("Task_Dispatch")
    assert dispatch is not None and dispatch.name == "派单"

    assert dispatch.sla == Sla(
        duration="PT2H",
        calendar="working",
        escalations=[
            Escalation("PT0M", "remind", "assignee"),
            Escalation("PT30M", "alert", "supervisor"),
            Escalation("PT1H", "reassign", "role:调度主管"),
        ],
    )
    assert dispatch.assignments == [
        Assignment(rule="role", role="高级调度员", scope="region", when='priority == "urgent"'),
        Assignment(rule="least_loaded", role="调度员", scope="region"),
    ]
    handle = graph.node("Task_Handle")
    assert handle is not None and handle.assignment == Assignment(rule="field", field="engineer")
    reserve = graph.node("Task_ReserveParts")
    assert reserve is not None
    assert reserve.action == Action("reserve_parts", {"parts_field": "parts"})
    timeout = graph.node("Boundary_InspectTimeout")
    assert timeout is not None
    assert (timeout.attached_to, timeout.cancel_activity) == ("Task_Inspect", True)
    assert timeout.timer == Timer("duration", "P7D", "TimerEventDefinition_InspectTimeout")


@pytest.mark.parametrize(
    ("amount", "path"),
    [
        (5000, ["Task_TeamLead", "EndEvent_Approved"]),
        (120.5, ["Task_TeamLead", "EndEvent_Approved"]),
        (5000.01, ["Task_RegionalManager", "Task_Finance", "EndEvent_Approved"]),
        (80000, ["Task_RegionalManager", "Task_Finance", "EndEvent_Approved"]),
    ],
)
def test_approval_routes_by_amount(amount: float, path: list[str]) -> None:
    graph = parse_bpmn(read("approval_by_amount.bpmn"))

    assert walk(graph, {"amount": amount}, {}) == path


def test_approval_rejections_end_rejected_and_finance_reminder_does_not_interrupt() -> None:
    graph = parse_bpmn(read("approval_by_amount.bpmn"))

    assert walk(graph, {"amount": 100}, {"Task_TeamLead": "reject"}) == [
        "Task_TeamLead",
        "EndEvent_Rejected",
    ]
    assert walk(graph, {"amount": 9000}, {"Task_Finance": "reject"}) == [
        "Task_RegionalManager",
        "Task_Finance",
        "EndEvent_Rejected",
    ]
    small = next(f for f in graph.flows if f.id == "Flow_Small")
    large = next(f for f in graph.flows if f.id == "Flow_Large")
    assert (small.condition, large.condition) == ("amount <= 5000", "amount > 5000")
    lead = graph.node("Task_TeamLead")
    assert lead is not None and lead.assignment == Assignment(rule="manager")
    reminder = graph.node("Boundary_FinanceOverdue")
    assert reminder is not None and reminder.cancel_activity is False
    assert [o.name for o in lead.outcomes] == ["同意", "驳回"]


# --------------------------------------------------------------------------------------------
# Files from other tools, unsupported content


def test_camunda_modeler_file_imports_with_its_extensions_kept() -> None:
    graph = load_bpmn(read("camunda_leave_request.bpmn"))

    approve = graph.node("Activity_Approve")
    assert approve is not None and approve.type == "userTask"
    assert approve.assignments == []  # camunda:assignee is not ours: kept, not interpreted
    assert approve.attrs[f"{{{CAMUNDA}}}assignee"] == "${manager}"
    assert [x.tag for x in approve.extensions] == [
        f"{{{CAMUNDA}}}taskListener",
        f"{{{CAMUNDA}}}properties",
    ]
    assert approve.documentation == "经理在 1 小时内处理；超时会提醒但不中断审批。"
    returned = graph.node("Event_Returned")
    assert returned is not None
    assert returned.message == MessageTrigger("Message_Returned", "MessageEventDefinition_0m3q7v1")
    assert graph.messages == [Message("Message_Returned", "leave_returned")]
    assert graph.namespaces["camunda"] == CAMUNDA
    assert [_tag(x) for x in graph.root_extras] == ["collaboration"]
    assert [_tag(x) for x in graph.process_extras] == ["laneSet", "textAnnotation", "association"]
    assert graph.diagrams[0].plane_element == "Collaboration_0y8kqcn"
    remind = graph.node("Event_Remind")
    assert remind is not None and remind.cancel_activity is False


def test_camunda_juel_conditions_are_reported_by_the_expression_check() -> None:
    graph = parse_bpmn(read("camunda_leave_request.bpmn"))

    problems = validate(graph, check_expression=check_simple_expression)

    assert codes(problems) == {("expression_invalid", "Flow_Approve")}


def _tag(x: XmlElement) -> str:
    return x.tag.split("}")[1]


def test_file_with_unsupported_elements_is_refused_listing_each() -> None:
    data = read("unsupported_elements.bpmn")

    graph = parse_bpmn(data)  # never crashes
    with pytest.raises(BpmnInvalid) as refused:
        load_bpmn(data)

    expected = {
        ("StartEvent_Message", "bpmn:startEvent", "bpmn:messageEventDefinition"),
        ("Activity_Script", "bpmn:scriptTask", ""),
        ("Gateway_Inclusive", "bpmn:inclusiveGateway", ""),
        ("Activity_Sub", "bpmn:subProcess", ""),
        ("Activity_Multi", "bpmn:userTask", "bpmn:multiInstanceLoopCharacteristics"),
        ("Event_Signal", "bpmn:intermediateThrowEvent", "bpmn:signalEventDefinition"),
        ("Event_Conditional", "bpmn:intermediateCatchEvent", "bpmn:conditionalEventDefinition"),
        ("Activity_Send", "bpmn:sendTask", ""),
        ("Event_Escalate", "bpmn:endEvent", "bpmn:escalationEventDefinition"),
        ("Event_Terminate", "bpmn:endEvent", "bpmn:terminateEventDefinition"),
        ("Event_Error", "bpmn:boundaryEvent", "bpmn:errorEventDefinition"),
        ("DataObjectReference_1", "bpmn:dataObjectReference", ""),
        ("DataObject_1", "bpmn:dataObject", ""),
    }
    assert {(u.element_id, u.tag, u.detail) for u in graph.unsupported} == expected
    listed = {p.element_id for p in refused.value.problems if p.code == "unsupported"}
    assert listed == {element_id for element_id, _, _ in expected}
    for element_id, _, _ in expected:
        assert element_id in str(refused.value)
    # Flows into unsupported elements are not also reported as dangling.
    assert not {p.code for p in refused.value.problems} & {
        "flow_source_missing",
        "flow_target_missing",
        "unreachable",
    }
    message = next(p.message for p in refused.value.problems if p.element_id == "Activity_Script")
    assert message == "元素 Activity_Script：不支持脚本任务（bpmn:scriptTask）"


def test_timer_start_and_plain_task_are_unsupported() -> None:
    xml = _process(
        """
        <bpmn:startEvent id="S"><bpmn:timerEventDefinition/></bpmn:startEvent>
        <bpmn:task id="T"/>
        <bpmn:intermediateCatchEvent id="C"/>
        <bpmn:boundaryEvent id="X" attachedToRef="T"><bpmn:timerEventDefinition/>
          <bpmn:messageEventDefinition/></bpmn:boundaryEvent>
        """
    )

    graph = parse_bpmn(xml)

    assert {(u.element_id, u.tag) for u in graph.unsupported} == {
        ("S", "bpmn:startEvent"),
        ("T", "bpmn:task"),
        ("C", "bpmn:intermediateCatchEvent"),
        ("X", "bpmn:boundaryEvent"),
    }
    assert graph.nodes == []


# --------------------------------------------------------------------------------------------
# Input that cannot be read


def _process(body: str, *, extra_ns: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:jw="http://jingwei.example/schema/bpmn" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
        'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
        f'id="D" targetNamespace="http://x" {extra_ns}>'
        f'<bpmn:process id="P" isExecutable="true">{body}</bpmn:process>'
        "</bpmn:definitions>"
    )


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
  <bpmn:process id="P" name="&lol4;"/>
</bpmn:definitions>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">
  <bpmn:process id="P" name="&secret;"/>
</bpmn:definitions>"""


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "为空"),
        ("   \n", "为空"),
        (b"<bpmn:definitions", "XML 格式错误"),
        ("<a><b></a>", "XML 格式错误"),
        (b"\xff\xfe\x00garbage", "XML"),
        ("<html><body>hello</body></html>", "不是 BPMN 2.0 文件"),
        ('<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/XXX"/>', "命名空间"),
        (
            '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"/>',
            "没有流程",
        ),
        (
            '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">'
            '<bpmn:process id="A"/><bpmn:process id="B"/></bpmn:definitions>',
            "2 个流程（A、B）",
        ),
        (BILLION_LAUGHS, "DTD"),
        (XXE, "DTD"),
        ('<!DOCTYPE bpmn:definitions><bpmn:definitions xmlns:bpmn="x"/>', "DTD"),
    ],
)
def test_unreadable_input_is_a_clear_error(data: bytes | str, words: str) -> None:
    with pytest.raises(BpmnError) as error:
        parse_bpmn(data)

    assert words in str(error.value)
    assert re.search(r"[\u4e00-\u9fff]", str(error.value))  # a Chinese message


def test_wrong_type_and_oversized_input_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BpmnError, match="文本或字节"):
        parse_bpmn(123)  # type: ignore[arg-type]
    monkeypatch.setattr(bpmn, "MAX_BPMN_BYTES", 100)
    with pytest.raises(BpmnError, match="文件过大"):
        parse_bpmn(_process("<bpmn:startEvent id='S'/>"))


def test_str_input_with_another_declared_encoding_and_bytes_in_utf16() -> None:
    xml = _process('<bpmn:userTask id="T" name="受理"/>')
    as_gbk_declared = xml.replace('encoding="UTF-8"', 'encoding="GBK"')

    assert parse_bpmn(as_gbk_declared).nodes[0].name == "受理"
    assert parse_bpmn(xml.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"))


def test_a_namespace_prefix_other_than_bpmn_is_read() -> None:
    xml = (
        '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="D" '
        'targetNamespace="http://x"><process id="P"><startEvent id="S"/></process></definitions>'
    )

    graph = parse_bpmn(xml)

    assert [n.id for n in graph.nodes] == ["S"]
    assert graph.namespaces == {}
    assert "<bpmn:startEvent" in export_bpmn(graph)


# --------------------------------------------------------------------------------------------
# Export without a diagram, escaping


def test_export_draws_nodes_and_flows_the_diagram_lacks() -> None:
    graph = _clean_graph()
    assert graph.diagrams == []

    laid = ensure_layout(graph)
    again = parse_bpmn(export_bpmn(graph))

    diagram = again.diagrams[0]
    assert {s.element for s in diagram.shapes} == {n.id for n in graph.nodes}
    assert {e.element for e in diagram.edges} == {f.id for f in graph.flows}
    assert diagram.plane_element == graph.process_id
    assert again == laid
    boundary = next(s for s in diagram.shapes if s.element == "B_Remind")
    host = next(s for s in diagram.shapes if s.element == "T_Approve")
    assert boundary.bounds.y + 18 == host.bounds.y + host.bounds.height  # on the lower edge
    assert host.bounds.x <= boundary.bounds.x <= host.bounds.x + host.bounds.width


def test_export_adds_only_the_missing_shapes() -> None:
    graph = parse_bpmn(read("simple_linear.bpmn"))
    graph.nodes.append(Node("Extra", "endEvent", "另一个结束"))
    graph.flows.append(Flow("Flow_Extra", "Activity_Handle", "Extra"))

    again = parse_bpmn(export_bpmn(graph))

    assert again.diagrams[0].shapes[:3] == graph.diagrams[0].shapes
    assert again.diagrams[0].edges[:2] == graph.diagrams[0].edges
    assert {s.element for s in again.diagrams[0].shapes[3:]} == {"Extra"}
    assert {e.element for e in again.diagrams[0].edges[2:]} == {"Flow_Extra"}


def test_special_characters_survive_and_invalid_ones_are_refused() -> None:
    graph = _clean_graph()
    node = graph.node("T_Approve")
    assert node is not None
    node.name = "审批 <\"&'>\n\t第二行 ]]>"
    node.documentation = "  多行\r\n说明 & <b>粗体</b>  "
    node.action = None

    again = parse_bpmn(export_bpmn(graph))

    assert again.node("T_Approve") == node
    node.name = "bad\x00char"
    with pytest.raises(BpmnError, match="不允许的字符"):
        export_bpmn(graph)


def test_long_action_params_are_written_as_text() -> None:
    graph = _clean_graph()
    notify = graph.node("S_Notify")
    assert notify is not None and notify.action is not None
    notify.action.params["body"] = "第一行\n第二行"

    text = export_bpmn(graph)

    assert '<jw:param name="body">第一行\n第二行</jw:param>' in text
    assert parse_bpmn(text).node("S_Notify") == notify


# --------------------------------------------------------------------------------------------
# Validation: a clean definition, then one breach per rule


def _clean_graph() -> Graph:
    """start → 审批 (approval, SLA, non-interrupting reminder) → gateway: approve → parallel fork
    → (notify ‖ sub-flow) → join → wait 1 day → wait for message → end; otherwise → end."""
    nodes = [
        Node("Start", "startEvent", "开始", form=Form("expense_request")),
        Node(
            "T_Approve",
            "userTask",
            "审批",
            assignments=[
                Assignment("role", role="高级经理", scope="region", when="amount > 10000"),
                Assignment("manager"),
            ],
            form=Form("expense_request"),
            outcomes=[Outcome("approve", "同意"), Outcome("reject", "驳回")],
            sla=Sla("PT4H", "working", [Escalation("PT0M", "remind", "assignee")]),
        ),
        Node("G_Decide", "exclusiveGateway", "结论"),
        Node("G_Fork", "parallelGateway"),
        Node("S_Notify", "serviceTask", "通知", action=Action("notify", {"template": "x"})),
        Node("C_Sub", "callActivity", "子流程", called_element="other_flow"),
        Node("G_Join", "parallelGateway"),
        Node("W_Wait", "intermediateCatchEvent", "等 1 天", timer=Timer("duration", "P1D")),
        Node(
            "M_Wait",
            "intermediateCatchEvent",
            "等客户确认",
            message=MessageTrigger("Msg_Confirm"),
            sla=Sla("P2D"),
        ),
        Node("End_Done", "endEvent", "完成"),
        Node("End_Rejected", "endEvent", "驳回"),
        Node(
            "B_Remind",
            "boundaryEvent",
            "超时提醒",
            timer=Timer("duration", "PT8H"),
            attached_to="T_Approve",
            cancel_activity=False,
        ),
        Node("End_Reminded", "endEvent", "已提醒"),
    ]
    flows = [
        Flow("f1", "Start", "T_Approve"),
        Flow("f2", "T_Approve", "G_Decide"),
        Flow("f_yes", "G_Decide", "G_Fork", condition='outcome == "approve"'),
        Flow("f_no", "G_Decide", "End_Rejected", is_default=True),
        Flow("f3", "G_Fork", "S_Notify"),
        Flow("f4", "G_Fork", "C_Sub"),
        Flow("f5", "S_Notify", "G_Join"),
        Flow("f6", "C_Sub", "G_Join"),
        Flow("f7", "G_Join", "W_Wait"),
        Flow("f8", "W_Wait", "M_Wait"),
        Flow("f9", "M_Wait", "End_Done"),
        Flow("f10", "B_Remind", "End_Reminded"),
    ]
    return Graph(
        process_id="clean",
        process_name="干净的流程",
        nodes=nodes,
        flows=flows,
        messages=[Message("Msg_Confirm", "customer_confirmed")],
    )


def _validate(graph: Graph, **kwargs: Any) -> set[tuple[str, str]]:
    options: dict[str, Any] = {
        "known_form_keys": {"expense_request"},
        "known_actions": set(BUILTIN_ACTIONS),
        "check_expression": check_simple_expression,
        "known_processes": {"other_flow"},
    }
    options.update(kwargs)
    return codes(validate(graph, **options))


def test_clean_graph_has_no_problems_and_round_trips() -> None:
    graph = _clean_graph()

    assert _validate(graph) == set()
    assert parse_bpmn(export_bpmn(graph)) == ensure_layout(graph)


def _node(graph: Graph, node_id: str) -> Node:
    node = graph.node(node_id)
    assert node is not None
    return node


def _flow(graph: Graph, flow_id: str) -> Flow:
    return next(f for f in graph.flows if f.id == flow_id)


def _drop_flow(graph: Graph, flow_id: str) -> None:
    graph.flows = [f for f in graph.flows if f.id != flow_id]


def _drop_node(graph: Graph, node_id: str) -> None:
    graph.nodes = [n for n in graph.nodes if n.id != node_id]
    graph.flows = [f for f in graph.flows if node_id not in (f.source, f.target)]


def _set(attr: str, value: Any, node_id: str) -> Callable[[Graph], None]:
    def mutate(g: Graph) -> None:
        setattr(_node(g, node_id), attr, value)

    return mutate


def _chain(*steps: Callable[[Graph], None]) -> Callable[[Graph], None]:
    def mutate(g: Graph) -> None:
        for step in steps:
            step(g)

    return mutate


def _add_node(node: Node) -> Callable[[Graph], None]:
    return lambda g: g.nodes.append(node)


def _add_flow(flow: Flow) -> Callable[[Graph], None]:
    return lambda g: g.flows.append(flow)


def _flow_set(flow_id: str, **changes: Any) -> Callable[[Graph], None]:
    def mutate(g: Graph) -> None:
        for key, value in changes.items():
            setattr(_flow(g, flow_id), key, value)

    return mutate


def _escalations(*steps: Escalation) -> Sla:
    return Sla("PT4H", "working", list(steps))


JW_FOO = XmlElement("{http://jingwei.example/schema/bpmn}foo")

RULE_CASES: list[tuple[str, Callable[[Graph], None], str, str]] = [
    ("duplicate id", _add_node(Node("S_Notify", "endEvent")), "duplicate_id", "S_Notify"),
    ("missing id", _flow_set("f1", id=""), "id_missing", ""),
    ("no start", lambda g: _drop_node(g, "Start"), "start_missing", "clean"),
    (
        "two starts",
        _chain(
            _add_node(Node("Start2", "startEvent")), _add_flow(Flow("fs2", "Start2", "T_Approve"))
        ),
        "start_multiple",
        "Start2",
    ),
    ("flow into start", _add_flow(Flow("fx", "End_Done", "Start")), "start_has_incoming", "Start"),
    (
        "no end",
        _chain(
            lambda g: g.nodes.__setitem__(
                slice(None),
                [replace(n, type="userTask") if n.type == "endEvent" else n for n in g.nodes],
            ),
        ),
        "end_missing",
        "clean",
    ),
    (
        "flow out of end",
        _add_flow(Flow("fx", "End_Done", "W_Wait")),
        "end_has_outgoing",
        "End_Done",
    ),
    ("flow from nowhere", _add_flow(Flow("fx", "Ghost", "End_Done")), "flow_source_missing", "fx"),
    ("flow to nowhere", _add_flow(Flow("fx", "W_Wait", "Ghost")), "flow_target_missing", "fx"),
    (
        "boundary on nothing",
        _set("attached_to", "Ghost", "B_Remind"),
        "boundary_target_missing",
        "B_Remind",
    ),
    (
        "boundary on gateway",
        _set("attached_to", "G_Fork", "B_Remind"),
        "boundary_target_invalid",
        "B_Remind",
    ),
    (
        "flow into boundary",
        _add_flow(Flow("fx", "End_Done", "B_Remind")),
        "boundary_has_incoming",
        "B_Remind",
    ),
    ("task splits", _add_flow(Flow("fx", "S_Notify", "End_Done")), "implicit_split", "S_Notify"),
    (
        "exclusive without condition",
        _flow_set("f_yes", condition=None),
        "condition_missing",
        "f_yes",
    ),
    ("blank condition", _flow_set("f_yes", condition="  "), "condition_missing", "f_yes"),
    (
        "condition after task",
        _flow_set("f1", condition="amount > 1"),
        "condition_not_allowed",
        "f1",
    ),
    (
        "condition after fork",
        _flow_set("f3", condition="amount > 1"),
        "condition_not_allowed",
        "f3",
    ),
    ("default after fork", _flow_set("f3", is_default=True), "default_not_allowed", "f3"),
    ("default after task", _flow_set("f2", is_default=True), "default_not_allowed", "f2"),
    ("two defaults", _flow_set("f_yes", is_default=True), "default_multiple", "G_Decide"),
    (
        "default with condition",
        _flow_set("f_no", condition="amount > 1"),
        "default_with_condition",
        "f_no",
    ),
    ("bad condition", _flow_set("f_yes", condition="outcome ==="), "expression_invalid", "f_yes"),
    (
        "bad assignment condition",
        lambda g: setattr(_node(g, "T_Approve").assignments[0], "when", "amount >"),
        "expression_invalid",
        "T_Approve",
    ),
    ("form without key", _set("form", Form(""), "T_Approve"), "form_invalid", "T_Approve"),
    ("unknown form", _set("form", Form("nope"), "Start"), "form_unknown", "Start"),
    ("service task without action", _set("action", None, "S_Notify"), "action_missing", "S_Notify"),
    ("action without name", _set("action", Action(""), "S_Notify"), "action_missing", "S_Notify"),
    (
        "unknown action",
        _set("action", Action("launch_rocket"), "S_Notify"),
        "action_unknown",
        "S_Notify",
    ),
    (
        "unknown assignment rule",
        _set("assignments", [Assignment("random")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "role rule without role",
        _set("assignments", [Assignment("least_loaded")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "user rule without user",
        _set("assignments", [Assignment("user")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "field rule without field",
        _set("assignments", [Assignment("field")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "bad scope",
        _set("assignments", [Assignment("role", role="客服", scope="galaxy")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "unconditional rule shadows the next",
        _set("assignments", [Assignment("manager"), Assignment("role", role="客服")], "T_Approve"),
        "assignment_invalid",
        "T_Approve",
    ),
    (
        "duplicate outcome",
        _set("outcomes", [Outcome("ok"), Outcome("ok")], "T_Approve"),
        "outcome_invalid",
        "T_Approve",
    ),
    (
        "outcome without id",
        _set("outcomes", [Outcome("")], "T_Approve"),
        "outcome_invalid",
        "T_Approve",
    ),
    ("sla bad duration", _set("sla", Sla("2 hours"), "T_Approve"), "sla_invalid", "T_Approve"),
    ("sla in months", _set("sla", Sla("P1M"), "T_Approve"), "sla_invalid", "T_Approve"),
    ("sla empty duration", _set("sla", Sla(""), "T_Approve"), "sla_invalid", "T_Approve"),
    (
        "sla bad calendar",
        _set("sla", Sla("PT1H", "lunar"), "T_Approve"),
        "sla_invalid",
        "T_Approve",
    ),
    (
        "escalation bad after",
        _set("sla", _escalations(Escalation("soon", "remind", "assignee")), "T_Approve"),
        "sla_invalid",
        "T_Approve",
    ),
    (
        "escalation bad action",
        _set("sla", _escalations(Escalation("PT0M", "shout", "assignee")), "T_Approve"),
        "sla_invalid",
        "T_Approve",
    ),
    (
        "escalation bad target",
        _set("sla", _escalations(Escalation("PT0M", "remind", "ceo")), "T_Approve"),
        "sla_invalid",
        "T_Approve",
    ),
    (
        "escalation empty role",
        _set("sla", _escalations(Escalation("PT0M", "remind", "role:")), "T_Approve"),
        "sla_invalid",
        "T_Approve",
    ),
    (
        "escalations out of order",
        _set(
            "sla",
            _escalations(
                Escalation("PT1H", "remind", "assignee"), Escalation("PT30M", "alert", "manager")
            ),
            "T_Approve",
        ),
        "sla_invalid",
        "T_Approve",
    ),
    ("empty timer", _set("timer", Timer(""), "W_Wait"), "timer_invalid", "W_Wait"),
    ("cycle timer", _set("timer", Timer("cycle", "R3/PT1H"), "W_Wait"), "timer_invalid", "W_Wait"),
    (
        "bad duration timer",
        _set("timer", Timer("duration", "${later}"), "W_Wait"),
        "timer_invalid",
        "W_Wait",
    ),
    ("week timer", _set("timer", Timer("duration", "P1W"), "W_Wait"), "timer_invalid", "W_Wait"),
    (
        "naive date timer",
        _set("timer", Timer("date", "2025-06-01T09:00:00"), "W_Wait"),
        "timer_invalid",
        "W_Wait",
    ),
    (
        "bad date timer",
        _set("timer", Timer("date", "tomorrow"), "B_Remind"),
        "timer_invalid",
        "B_Remind",
    ),
    (
        "message without ref",
        _set("message", MessageTrigger(""), "M_Wait"),
        "message_invalid",
        "M_Wait",
    ),
    (
        "message ref unknown",
        _set("message", MessageTrigger("Msg_Ghost"), "M_Wait"),
        "message_invalid",
        "M_Wait",
    ),
    (
        "message without name",
        lambda g: setattr(g.messages[0], "name", ""),
        "message_invalid",
        "M_Wait",
    ),
    ("call without target", _set("called_element", "", "C_Sub"), "call_invalid", "C_Sub"),
    ("call itself", _set("called_element", "clean", "C_Sub"), "call_invalid", "C_Sub"),
    ("call unknown", _set("called_element", "ghost_flow", "C_Sub"), "call_unknown", "C_Sub"),
    (
        "unknown jw element",
        _set("extensions", [JW_FOO], "T_Approve"),
        "extension_unknown",
        "T_Approve",
    ),
    (
        "unknown jw element on flow",
        _flow_set("f1", extensions=[JW_FOO]),
        "extension_unknown",
        "f1",
    ),
    (
        "action on user task",
        _set("action", Action("notify"), "T_Approve"),
        "extension_misplaced",
        "T_Approve",
    ),
    (
        "assignment on service task",
        _set("assignments", [Assignment("manager")], "S_Notify"),
        "extension_misplaced",
        "S_Notify",
    ),
    (
        "form on end",
        _set("form", Form("expense_request"), "End_Done"),
        "extension_misplaced",
        "End_Done",
    ),
    ("outcomes on call", _set("outcomes", [Outcome("a")], "C_Sub"), "extension_misplaced", "C_Sub"),
    ("sla on timer", _set("sla", Sla("PT1H"), "W_Wait"), "extension_misplaced", "W_Wait"),
    (
        "unreachable node",
        _chain(
            _add_node(Node("Orphan", "userTask", "孤儿")),
            _add_flow(Flow("fo", "Orphan", "End_Done")),
        ),
        "unreachable",
        "Orphan",
    ),
    (
        "dead end",
        _chain(lambda g: _drop_flow(g, "f9")),
        "dead_end",
        "M_Wait",
    ),
    (
        "exclusive gateway without outgoing",
        _chain(lambda g: _drop_flow(g, "f_yes"), lambda g: _drop_flow(g, "f_no")),
        "dead_end",
        "G_Decide",
    ),
    (
        "loop without exit",
        _chain(
            lambda g: _drop_flow(g, "f9"),
            _add_node(Node("G_Loop", "exclusiveGateway")),
            _add_flow(Flow("fl1", "M_Wait", "G_Loop")),
            _add_flow(Flow("fl2", "G_Loop", "W_Wait")),
        ),
        "no_path_to_end",
        "G_Loop",
    ),
    (
        "join fed by an exclusive choice",
        _chain(
            lambda g: setattr(_node(g, "G_Fork"), "type", "exclusiveGateway"),
            _flow_set("f3", condition="amount > 1"),
            _flow_set("f4", is_default=True),
        ),
        "parallel_deadlock",
        "G_Join",
    ),
    (
        "join after an interrupting boundary",
        _chain(
            _add_node(
                Node("B_Cut", "boundaryEvent", timer=Timer("duration", "PT1H"), attached_to="C_Sub")
            ),
            _add_flow(Flow("fb", "B_Cut", "End_Done")),
        ),
        "parallel_deadlock",
        "G_Join",
    ),
    (
        "fork merged by an exclusive gateway",
        lambda g: setattr(_node(g, "G_Join"), "type", "exclusiveGateway"),
        "parallel_unsynchronized",
        "W_Wait",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "code", "element_id"),
    [pytest.param(m, c, e, id=name) for name, m, c, e in RULE_CASES],
)
def test_validation_rule_fires(mutate: Callable[[Graph], None], code: str, element_id: str) -> None:
    graph = _clean_graph()
    mutate(graph)

    problems = validate(
        graph,
        known_form_keys={"expense_request"},
        known_actions=set(BUILTIN_ACTIONS),
        check_expression=check_simple_expression,
        known_processes={"other_flow"},
    )

    assert (code, element_id) in codes(problems), problems
    problem = next(p for p in problems if (p.code, p.element_id) == (code, element_id))
    assert re.search(r"[\u4e00-\u9fff]", problem.message)


def test_every_documented_code_has_a_case() -> None:
    assert bpmn.__doc__ is not None
    code_list = bpmn.__doc__.split("Problem codes")[1].strip().split("\n\n")[-1]
    documented = set(re.findall(r"[a-z_]+", code_list))
    assert len(documented) > 40
    parse_time = {"unsupported", "param_duplicate", "default_invalid", "di_invalid"}

    covered = {code for _, _, code, _ in RULE_CASES} | parse_time

    assert documented == covered


@pytest.mark.parametrize(
    ("body", "code", "element_id"),
    [
        (
            '<bpmn:serviceTask id="S"><bpmn:extensionElements><jw:action name="notify">'
            '<jw:param name="to" value="a"/><jw:param name="to" value="b"/>'
            "</jw:action></bpmn:extensionElements></bpmn:serviceTask>",
            "param_duplicate",
            "S",
        ),
        ('<bpmn:exclusiveGateway id="G" default="Ghost"/>', "default_invalid", "G"),
        (
            '<bpmn:exclusiveGateway id="G" default="F"/><bpmn:startEvent id="S"/>'
            '<bpmn:sequenceFlow id="F" sourceRef="S" targetRef="G"/>',
            "default_invalid",
            "G",
        ),
        (
            '<bpmn:userTask id="T"><bpmn:extensionElements><jw:form key="a"/><jw:form key="b"/>'
            "</bpmn:extensionElements></bpmn:userTask>",
            "extension_unknown",
            "T",
        ),
        ('<bpmn:scriptTask id="X"/>', "unsupported", "X"),
    ],
)
def test_parse_time_problem_is_reported(body: str, code: str, element_id: str) -> None:
    graph = parse_bpmn(_process(body))

    assert (code, element_id) in codes(validate(graph))


def test_bad_diagram_coordinates_are_reported_not_fatal() -> None:
    xml = _process('<bpmn:startEvent id="S"/>').replace(
        "</bpmn:definitions>",
        '<bpmndi:BPMNDiagram id="D1"><bpmndi:BPMNPlane id="P1" bpmnElement="P">'
        '<bpmndi:BPMNShape id="S_di" bpmnElement="S"><dc:Bounds x="abc" y="1" width="2" '
        'height="3"/></bpmndi:BPMNShape><bpmndi:BPMNShape id="Q_di" bpmnElement="S"/>'
        "</bpmndi:BPMNPlane></bpmndi:BPMNDiagram></bpmn:definitions>",
    )

    graph = parse_bpmn(xml)

    assert graph.diagrams[0].shapes == []
    assert ("di_invalid", "S") in codes(validate(graph))


def test_parallel_gateway_may_join_and_fork_at_once() -> None:
    graph = _clean_graph()
    # G_Join joins two branches and forks two new ones that a second join merges.
    _drop_flow(graph, "f7")
    graph.nodes += [
        Node("S_A", "serviceTask", action=Action("notify")),
        Node("S_B", "serviceTask", action=Action("webhook")),
        Node("G_Join2", "parallelGateway"),
    ]
    graph.flows += [
        Flow("fa", "G_Join", "S_A"),
        Flow("fb", "G_Join", "S_B"),
        Flow("fa2", "S_A", "G_Join2"),
        Flow("fb2", "S_B", "G_Join2"),
        Flow("fj", "G_Join2", "W_Wait"),
    ]

    assert _validate(graph) == set()


def test_validation_skips_checks_whose_inputs_are_not_given() -> None:
    graph = _clean_graph()
    _node(graph, "S_Notify").action = Action("launch_rocket")
    _node(graph, "Start").form = Form("nope")
    _flow(graph, "f_yes").condition = "~~~"
    _node(graph, "C_Sub").called_element = "ghost"

    assert validate(graph) == []


def test_expression_checker_that_raises_is_a_problem_not_a_crash() -> None:
    def explode(text: str) -> str | None:
        raise RuntimeError("boom")

    problems = validate(_clean_graph(), check_expression=explode)

    assert ("expression_invalid", "f_yes") in codes(problems)


def test_load_bpmn_returns_the_graph_when_clean_and_lists_problems_otherwise() -> None:
    graph = load_bpmn(read("after_sales_sop.bpmn"), known_form_keys={"after_sales"})
    assert graph.process_id == "after_sales_sop"

    with pytest.raises(BpmnInvalid) as refused:
        load_bpmn(read("after_sales_sop.bpmn"), known_form_keys={"other"})

    assert {p.code for p in refused.value.problems} == {"form_unknown"}
    assert str(refused.value).startswith("流程定义有 7 个问题：")


# --------------------------------------------------------------------------------------------
# Durations and dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT0M", timedelta(0)),
        ("PT2H", timedelta(hours=2)),
        ("P1DT12H30M", timedelta(days=1, hours=12, minutes=30)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("P7D", timedelta(days=7)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1M", "P1Y", "P1W", "-PT1H", "PT1H2", "2h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_datetime_needs_an_offset() -> None:
    assert parse_datetime("2025-06-01T09:00:00+08:00").utcoffset() == timedelta(hours=8)
    assert parse_datetime("2025-06-01T01:00:00Z").utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        parse_datetime("2025-06-01T09:00:00")


# --------------------------------------------------------------------------------------------
# Property-based: random graphs of supported nodes round-trip; nothing crashes the reader

_XML_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from(
    "\n\t\r"
)
TEXT = st.text(_XML_CHARS, max_size=10)
STRIPPED = TEXT.map(str.strip)
IDS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
CAMUNDA_ATTRS = st.dictionaries(
    st.sampled_from([f"{{{CAMUNDA}}}assignee", f"{{{CAMUNDA}}}asyncBefore", "customAttr"]),
    TEXT,
    max_size=2,
)


_RAW_TAGS = st.sampled_from(["properties", "property", "taskListener", "inputParameter"]).map(
    lambda local: f"{{{CAMUNDA}}}{local}"
)
_RAW_ATTRS = st.dictionaries(st.sampled_from(["name", "value", "class"]), TEXT, max_size=2).map(
    lambda attrs: tuple(attrs.items())
)
# Vendor extension elements kept verbatim: leaves with text, or elements with children (an
# element with children keeps no whitespace-only text, which is indentation).
RAW_ELEMENTS = st.recursive(
    st.builds(XmlElement, tag=_RAW_TAGS, attrs=_RAW_ATTRS, text=st.none() | TEXT.filter(bool)),
    lambda children: st.builds(
        XmlElement,
        tag=_RAW_TAGS,
        attrs=_RAW_ATTRS,
        children=st.lists(children, min_size=1, max_size=2).map(tuple),
    ),
    max_leaves=4,
)


ASSIGNMENTS = st.builds(
    Assignment, rule=TEXT, role=TEXT, user=TEXT, field=TEXT, scope=TEXT, when=TEXT
)
SLAS = st.builds(
    Sla,
    duration=TEXT,
    calendar=TEXT,
    escalations=st.lists(st.builds(Escalation, after=TEXT, action=TEXT, target=TEXT), max_size=3),
)
TIMERS = st.one_of(
    st.builds(Timer, kind=st.just(""), value=st.just(""), id=st.just("") | IDS),
    st.builds(
        Timer,
        kind=st.sampled_from(["duration", "date", "cycle"]),
        value=STRIPPED,
        id=st.just("") | IDS,
    ),
)
MESSAGES = st.builds(MessageTrigger, message_ref=st.just("") | IDS, id=st.just("") | IDS)


@st.composite
def nodes(draw: st.DrawFn, node_id: str, all_ids: list[str]) -> Node:
    kind = draw(st.sampled_from(bpmn.NODE_TYPES))
    node = Node(
        id=node_id,
        type=kind,
        name=draw(TEXT),
        documentation=draw(st.none() | TEXT),
        # Our settings on any node type: validate refuses misplaced ones, the file keeps them.
        assignments=draw(st.lists(ASSIGNMENTS, max_size=2)),
        form=draw(st.none() | st.builds(Form, key=TEXT)),
        outcomes=draw(st.lists(st.builds(Outcome, id=TEXT, name=TEXT), max_size=3)),
        sla=draw(st.none() | SLAS),
        action=draw(
            st.none() | st.builds(Action, name=TEXT, params=st.dictionaries(TEXT, TEXT, max_size=3))
        ),
        attrs=draw(CAMUNDA_ATTRS),
        extensions=draw(st.lists(RAW_ELEMENTS, max_size=2)),
    )
    if kind == "intermediateCatchEvent":
        if draw(st.booleans()):
            node.timer = draw(TIMERS)
        else:
            node.message = draw(MESSAGES)
    elif kind == "boundaryEvent":
        node.timer = draw(TIMERS)
        node.attached_to = draw(st.sampled_from(all_ids) | IDS)
        node.cancel_activity = draw(st.booleans())
    elif kind == "callActivity":
        node.called_element = draw(st.just("") | IDS)
    return node


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    node_ids = [f"n_{i}" for i in draw(st.lists(IDS, min_size=1, max_size=9, unique=True))]
    node_list = [draw(nodes(node_id, node_ids)) for node_id in node_ids]
    flow_ids = [f"f_{i}" for i in draw(st.lists(IDS, max_size=14, unique=True))]
    flows = []
    has_default: set[str] = set()
    for flow_id in flow_ids:
        source = draw(st.sampled_from(node_list))
        default = (
            source.type == "exclusiveGateway"
            and source.id not in has_default
            and draw(st.booleans())
        )
        if default:
            has_default.add(source.id)
        condition = draw(st.none() | STRIPPED)
        flows.append(
            Flow(
                id=flow_id,
                source=source.id,
                target=draw(st.sampled_from(node_ids)),
                name=draw(TEXT),
                condition=condition,
                # the language is an attribute of the condition element: none without one
                condition_language="" if condition is None else draw(st.sampled_from(["", "cel"])),
                is_default=default,
                documentation=draw(st.none() | TEXT),
                attrs=draw(CAMUNDA_ATTRS),
                extensions=draw(st.lists(RAW_ELEMENTS, max_size=1)),
            )
        )
    message_ids = draw(st.lists(IDS, max_size=2, unique=True))
    return Graph(
        process_id=draw(IDS),
        process_name=draw(TEXT),
        nodes=node_list,
        flows=flows,
        messages=[Message(f"m_{m}", draw(TEXT)) for m in message_ids],
        is_executable=draw(st.booleans()),
        documentation=draw(st.none() | TEXT),
        definitions_id=draw(IDS),
        target_namespace=draw(TEXT.filter(bool)),
        definitions_attrs=draw(
            st.dictionaries(st.sampled_from(["exporter", "exporterVersion"]), TEXT)
        ),
        process_attrs=draw(CAMUNDA_ATTRS),
        process_extensions=draw(st.lists(RAW_ELEMENTS, max_size=1)),
        root_extras=draw(st.lists(RAW_ELEMENTS, max_size=1)),
        namespaces={"camunda": CAMUNDA},
    )


@HYPOTHESIS
@given(graphs())
def test_random_graph_export_import_is_equal(graph: Graph) -> None:
    exported = export_bpmn(graph)

    again = parse_bpmn(exported)

    assert again == ensure_layout(graph)
    assert export_bpmn(again) == exported
    validate(again, check_expression=check_simple_expression)  # never raises


@HYPOTHESIS
@given(
    st.sampled_from([*ROUND_TRIP_FIXTURES, "unsupported_elements.bpmn"]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), TEXT), min_size=1, max_size=4),
)
def test_damaged_files_never_crash_the_reader(name: str, edits: list[tuple[int, int, str]]) -> None:
    text = read(name).decode()
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut :]

    try:
        graph = parse_bpmn(text)
    except BpmnError:
        return
    validate(graph, check_expression=check_simple_expression)
    try:
        again = parse_bpmn(export_bpmn(graph))
    except BpmnError as exc:
        assert "不允许的字符" in str(exc)
        return
    if not graph.unsupported and not graph.issues:
        assert again == ensure_layout(graph)


_ATTRIBUTE_NAMES = [
    "id",
    "name",
    "sourceRef",
    "targetRef",
    "attachedToRef",
    "cancelActivity",
    "default",
    "calledElement",
    "messageRef",
    "bpmnElement",
    "x",
    "width",
    "rule",
    "key",
    "duration",
    "after",
    "value",
]


@HYPOTHESIS
@given(st.sampled_from([*ROUND_TRIP_FIXTURES, "unsupported_elements.bpmn"]), st.data())
def test_structurally_damaged_files_never_crash(name: str, data: st.DataObject) -> None:
    root = ET.fromstring(read(name))
    for _ in range(data.draw(st.integers(1, 6))):
        parent = data.draw(st.sampled_from([e for e in root.iter()]))
        action = data.draw(st.sampled_from(["drop", "set_attr", "drop_attr", "text", "dup"]))
        if action in ("drop", "dup") and len(parent):
            child = data.draw(st.sampled_from(list(parent)))
            if action == "drop":
                parent.remove(child)
            else:
                parent.append(copy.deepcopy(child))
        elif action == "set_attr":
            parent.set(data.draw(st.sampled_from(_ATTRIBUTE_NAMES)), data.draw(TEXT))
        elif action == "drop_attr" and parent.attrib:
            del parent.attrib[data.draw(st.sampled_from(sorted(parent.attrib)))]
        elif action == "text":
            parent.text = data.draw(TEXT)
    damaged = ET.tostring(root, encoding="unicode")  # prefixes become ns0, ns1…

    try:
        graph = parse_bpmn(damaged)
    except BpmnError:
        return
    validate(graph, check_expression=check_simple_expression, known_actions=set(BUILTIN_ACTIONS))
    again = parse_bpmn(export_bpmn(graph))
    if not graph.unsupported and not graph.issues:
        assert again == ensure_layout(graph)


def _on_border(point: tuple[float, float], box: bpmn.Bounds) -> bool:
    x, y = point
    inside = box.x - 1 <= x <= box.x + box.width + 1 and box.y - 1 <= y <= box.y + box.height + 1
    strictly = box.x + 1 < x < box.x + box.width - 1 and box.y + 1 < y < box.y + box.height - 1
    return inside and not strictly


@pytest.mark.parametrize("name", ROUND_TRIP_FIXTURES)
def test_fixture_diagram_is_complete_and_consistent(name: str) -> None:
    graph = parse_bpmn(read(name))
    diagram = graph.diagrams[0]
    boxes = {s.element: s.bounds for s in diagram.shapes}
    nodes = {n.id: n for n in graph.nodes}

    assert set(nodes) <= set(boxes)
    assert {f.id for f in graph.flows} <= {e.element for e in diagram.edges}
    for edge in diagram.edges:
        flow = next((f for f in graph.flows if f.id == edge.element), None)
        if flow is None:
            continue  # an association
        assert len(edge.waypoints) >= 2
        assert _on_border(edge.waypoints[0], boxes[flow.source]), edge.id
        assert _on_border(edge.waypoints[-1], boxes[flow.target]), edge.id
        for (x1, y1), (x2, y2) in zip(edge.waypoints, edge.waypoints[1:], strict=False):
            assert x1 == x2 or y1 == y2, edge.id  # orthogonal segments, as bpmn-js routes
    placed = [n for n in graph.nodes if n.type != "boundaryEvent"]
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            p, q = boxes[a.id], boxes[b.id]
            apart = (
                p.x + p.width <= q.x
                or q.x + q.width <= p.x
                or p.y + p.height <= q.y
                or q.y + q.height <= p.y
            )
            assert apart, (a.id, b.id)
    for n in graph.nodes:
        if n.type == "boundaryEvent":
            box = boxes[n.id]
            centre = (box.x + box.width / 2, box.y + box.height / 2)
            assert _on_border(centre, boxes[n.attached_to]), n.id


def test_deeply_nested_extension_is_refused_not_a_crash() -> None:
    depth = 3000
    nested = "<c:x>" * depth + "</c:x>" * depth
    xml = _process(
        f'<bpmn:userTask id="T"><bpmn:extensionElements>{nested}</bpmn:extensionElements>'
        "</bpmn:userTask>",
        extra_ns='xmlns:c="http://camunda.org/schema/1.0/bpmn"',
    )

    with pytest.raises(BpmnError, match="嵌套"):
        parse_bpmn(xml)
    shallow = "<c:x>" * 20 + "</c:x>" * 20
    graph = parse_bpmn(xml.replace(nested, shallow))
    assert parse_bpmn(export_bpmn(graph)) == ensure_layout(graph)
