"""Checking a `Graph` against the subset the engine runs: `validate`, `load_bpmn` (parse +
validate) and `_Validator`, whose problem codes the package docstring lists.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from .model import (
    ACTIVITY_TYPES,
    ASSIGNMENT_RULES,
    ASSIGNMENT_SCOPES,
    ESCALATION_ACTIONS,
    ESCALATION_TARGETS,
    ROLE_RULES,
    SLA_CALENDARS,
    BpmnInvalid,
    Flow,
    Graph,
    Node,
    Problem,
    Sla,
    _flow_label,
    _is_jw,
    _label,
    _local,
    parse_datetime,
    parse_duration,
)
from .reader import parse_bpmn

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


def _has_condition(flow: Flow) -> bool:
    return bool(flow.condition and flow.condition.strip())


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
    """Every problem that keeps the engine from running `graph` (see the package docstring)."""
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
            named = e.target.removeprefix("role:").removeprefix("duty:")
            if e.target not in ESCALATION_TARGETS and not (
                e.target.startswith(("role:", "duty:")) and named.strip()
            ):
                self.add(
                    n.id,
                    "sla_invalid",
                    f"{label} 的第 {i} 级升级对象 {e.target or '（空）'} 无效（assignee、supervisor、manager、role:角色名 或 duty:值班表）",
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
