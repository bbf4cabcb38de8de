"""Flow operations: drafts and publishing, starting instances, task actions, messages, migration.

Each top-level service is one transaction and locks the rows it moves, so one transition is one
transaction: two people completing the same task at once get one success and one clear 409.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, DomainError, Forbidden, NotFound
from jingwei.org.models import Employee
from jingwei.org.scope import Actor
from jingwei.org.services import check_refs

from . import engine, sla
from .models import (
    Instance,
    InstanceStatus,
    ProcessDefinition,
    ProcessVersion,
    Task,
    TaskCandidate,
    TaskStatus,
    Token,
    TokenStatus,
)
from .spec import compile_spec

MANAGE = "flow.manage"
START = "flow.start"
ASSIGN = "flow.assign"
VIEW = "flow.view"


# --- definitions and versions ----------------------------------------------------------------


def definition_get(
    *, actor: Actor, key: str | None = None, definition_id: int | None = None, lock: bool = False
) -> ProcessDefinition:
    actor.require(VIEW)
    qs = ProcessDefinition.objects.visible_to(actor, VIEW)
    qs = qs.filter(key=key) if definition_id is None else qs.filter(pk=definition_id)
    found = (qs.select_for_update() if lock else qs).first()
    if found is None:
        raise NotFound("流程定义不存在", field="id" if definition_id is not None else "key")
    return found


def definition_save(*, actor: Actor, key: str, name: str, xml: str) -> ProcessDefinition:
    """Create the definition or replace its draft. Drafts are free to be wrong until published."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        definition = (
            ProcessDefinition.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, key=key)
            .first()
        )
        if definition is None:
            try:
                with transaction.atomic():
                    definition = ProcessDefinition.objects.create(
                        tenant_id=actor.tenant_id, key=key, name=name, draft_xml=xml
                    )
            except IntegrityError:
                raise Conflict("流程标识已存在", code="key_taken", field="key") from None
            action = "flows.definition.created"
        else:
            definition.name = name
            definition.draft_xml = xml
            definition.save(update_fields=["name", "draft_xml", "updated_at"])
            action = "flows.definition.updated"
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=action,
            subject=definition,
            after={"key": key, "name": name, "xml_chars": len(xml)},
        )
        return definition


def definition_publish(*, actor: Actor, key: str) -> ProcessVersion:
    """Validate the draft and publish it as the next immutable version. Refused with every problem
    (element id, code, message) when the draft would not run."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        definition = definition_get(actor=actor, key=key, lock=True)
        spec = compile_spec(definition.draft_xml)  # raises FlowDefinitionInvalid with the problems
        number = (
            definition.versions.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
        version = ProcessVersion.objects.create(
            tenant_id=actor.tenant_id,
            definition=definition,
            number=number,
            xml=definition.draft_xml,
            spec=spec,
            published_at=timezone.now(),
            published_by_id=actor.employee_id,
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="flows.version.published",
            subject=version,
            after={"key": key, "number": number},
        )
        return version


def latest_version(*, tenant_id: int, key: str) -> ProcessVersion:
    version = (
        ProcessVersion.objects.filter(tenant_id=tenant_id, definition__key=key)
        .select_related("definition")
        .order_by("-number")
        .first()
    )
    if version is None:
        raise NotFound(f"流程 {key} 没有已发布的版本", code="no_version", field="key")
    return version


# --- instances -------------------------------------------------------------------------------


def instance_start(
    *,
    actor: Actor,
    key: str,
    data: dict[str, Any] | None = None,
    business_key: str = "",
    region_id: int | None = None,
    department_id: int | None = None,
    owner_id: int | None = None,
) -> Instance:
    """Start the latest version of `key`. Domain services call this for their cases."""
    actor.require(START)
    with transaction.atomic(durable=True):
        check_refs(
            actor.tenant_id,
            {"region_id": region_id, "department_id": department_id, "owner_id": owner_id},
        )
        version = latest_version(tenant_id=actor.tenant_id, key=key)
        instance = engine.start(
            version,
            data=data or {},
            business_key=business_key,
            region_id=region_id,
            department_id=department_id,
            owner_id=owner_id if owner_id is not None else actor.employee_id,
            actor_id=actor.employee_id,
        )
        if not Instance.objects.visible_to(actor, VIEW).filter(pk=instance.pk).exists():
            raise Forbidden("只能在自己的数据范围内发起流程", code="out_of_scope")
        return instance


def instance_get(*, actor: Actor, instance_id: int) -> Instance:
    actor.require(VIEW)
    instance = (
        Instance.objects.visible_to(actor, VIEW)
        .select_related("version__definition")
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        raise NotFound("流程实例不存在", field="id")
    return instance


def instance_message(
    *, actor: Actor, instance_id: int, message: str, data: dict[str, Any] | None = None
) -> Instance:
    """Deliver an outside signal to a waiting message-catch event of the instance."""
    actor.require(START)
    with transaction.atomic(durable=True), engine.recording():
        instance_get(actor=actor, instance_id=instance_id)
        instance = engine.lock_instance(pk=instance_id)
        assert instance is not None
        nodes = engine.spec_of(instance)["nodes"]
        waiting = [
            t
            for t in Token.objects.select_for_update().filter(
                instance=instance, status=TokenStatus.ACTIVE
            )
            if nodes[t.node_id]["type"] == "intermediateCatchEvent"
            and nodes[t.node_id].get("message") == message
        ]
        if not waiting:
            raise Conflict(f"实例没有在等待消息 {message!r}", code="not_waiting", field="message")
        if data:
            engine.update_data(instance, data)
        engine.event(
            instance,
            "message.received",
            waiting[0].node_id,
            actor_id=actor.employee_id,
            data={"message": message},
        )
        engine.move_on(instance, waiting[0], actor_id=actor.employee_id)
        return instance


def instance_cancel(*, actor: Actor, instance_id: int, reason: str) -> Instance:
    """Withdraw a running instance (e.g. its ticket was cancelled): open tasks, timers and
    sub-flows stop. Needs flow.manage over the case."""
    actor.require(MANAGE)
    if not reason.strip():
        raise DomainError("请填写撤销原因", code="reason_required", field="reason")
    with transaction.atomic(durable=True), engine.recording():
        instance_get(actor=actor, instance_id=instance_id)
        if not Instance.objects.visible_to(actor, MANAGE).filter(pk=instance_id).exists():
            raise Forbidden("只能撤销自己数据范围内的流程", code="out_of_scope")
        instance = engine.lock_instance(pk=instance_id)
        assert instance is not None
        if instance.status != InstanceStatus.RUNNING:
            raise Conflict(
                f"流程已{instance.get_status_display()}，不能撤销", code="instance_not_running"
            )
        engine.cancel_instance(instance, reason=reason, actor_id=actor.employee_id)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="flows.instance.cancelled",
            subject=instance,
            data={"reason": reason, "business_key": instance.business_key},
        )
        return instance


# --- tasks -----------------------------------------------------------------------------------


def _task_for_update(actor: Actor, task_id: int, instance: Instance | None = None) -> Task:
    """The task, locked, if the actor may see it (as assignee, candidate or within flow.view scope).
    Given its instance (already locked: instance rows are locked first, always), the task's token
    is locked and loaded with it."""
    qs = Task.objects.filter(tenant_id=actor.tenant_id, pk=task_id)
    if instance is None:
        qs = qs.select_for_update(of=("self",)).select_related("instance__version")
    else:
        qs = qs.select_for_update(of=("self", "token")).select_related("token")
    task = qs.first()
    if task is None or not _may_see(actor, task):
        raise NotFound("任务不存在", field="id")
    if instance is not None:
        task.instance = instance
    return task


def _is_candidate(task: Task, actor: Actor) -> bool:
    return TaskCandidate.objects.filter(task=task, employee_id=actor.employee_id).exists()


def _may_see(actor: Actor, task: Task) -> bool:
    if task.assignee_id == actor.employee_id or _is_candidate(task, actor):
        return True
    return actor.has_perm(VIEW) and Task.objects.visible_to(actor, VIEW).filter(pk=task.pk).exists()


def _ensure_open(task: Task) -> None:
    if task.status != TaskStatus.OPEN:
        raise Conflict(
            f"任务「{task.name}」已{task.get_status_display()}，不能再处理", code="task_closed"
        )


def _may_act(actor: Actor, task: Task) -> bool:
    if task.assignee_id == actor.employee_id:
        return True
    if task.assignee_id is None and _is_candidate(task, actor):
        return True
    return (
        actor.has_perm(ASSIGN)
        and Task.objects.visible_to(actor, ASSIGN).filter(pk=task.pk).exists()
    )


def task_complete(
    *, actor: Actor, task_id: int, outcome: str = "", data: dict[str, Any] | None = None
) -> Task:
    with transaction.atomic(durable=True), engine.recording():
        instance = engine.lock_instance(tenant_id=actor.tenant_id, tasks__pk=task_id)
        if instance is None:
            raise NotFound("任务不存在", field="id")
        task = _task_for_update(actor, task_id, instance)
        _ensure_open(task)
        if not _may_act(actor, task):
            raise Forbidden("这不是您的任务", code="not_your_task")
        node = engine.spec_of(instance)["nodes"][task.node_id]
        allowed = [o["id"] for o in node.get("outcomes") or []]
        if allowed and outcome not in allowed:
            raise DomainError(
                f"请选择处理结果：{'、'.join(allowed)}", code="invalid_outcome", field="outcome"
            )
        task.status = TaskStatus.COMPLETED
        task.outcome = outcome
        task.completed_at = timezone.now()
        task.completed_by_id = actor.employee_id
        if task.assignee_id is None:
            task.assignee_id = actor.employee_id
        task.save(update_fields=["status", "outcome", "completed_at", "completed_by", "assignee"])
        sla.disarm(task, node)
        outcomes = (
            {**instance.data.get("outcomes", {}), task.node_id: outcome}
            if outcome
            else instance.data.get("outcomes", {})
        )
        engine.update_data(instance, {**(data or {}), "outcome": outcome, "outcomes": outcomes})
        engine.event(
            instance,
            "task.completed",
            task.node_id,
            task=task,
            actor_id=actor.employee_id,
            data={"outcome": outcome},
        )
        engine.move_on(instance, task.token, actor_id=actor.employee_id)
        return task


def _reassign(actor: Actor, task: Task, assignee_id: int | None, kind: str, reason: str) -> Task:
    previous = task.assignee_id
    task.assignee_id = assignee_id
    task.save(update_fields=["assignee"])
    engine.event(
        task.instance,
        kind,
        task.node_id,
        task=task,
        actor_id=actor.employee_id,
        data={"from": previous, "to": assignee_id, "reason": reason},
    )
    return task


def _colleague(actor: Actor, employee_id: int) -> int:
    found = Employee.objects.filter(
        tenant_id=actor.tenant_id, pk=employee_id, status="active"
    ).first()
    if found is None:
        raise DomainError("接收人不存在或已离职", code="invalid_reference", field="assignee_id")
    return found.pk


def task_claim(*, actor: Actor, task_id: int) -> Task:
    with transaction.atomic(durable=True):
        task = _task_for_update(actor, task_id)
        _ensure_open(task)
        if task.assignee_id is not None:
            raise Conflict("任务已被认领", code="already_claimed")
        if not _is_candidate(task, actor):
            raise Forbidden("您不是该任务的候选人", code="not_a_candidate")
        return _reassign(actor, task, actor.employee_id, "task.claimed", "")


def task_release(*, actor: Actor, task_id: int, reason: str = "") -> Task:
    with transaction.atomic(durable=True):
        task = _task_for_update(actor, task_id)
        _ensure_open(task)
        if task.assignee_id != actor.employee_id:
            raise Forbidden("只能退回自己的任务", code="not_your_task")
        return _reassign(actor, task, None, "task.released", reason)


def task_delegate(*, actor: Actor, task_id: int, assignee_id: int, reason: str) -> Task:
    """The assignee hands the task to a colleague (who then completes it)."""
    with transaction.atomic(durable=True):
        task = _task_for_update(actor, task_id)
        _ensure_open(task)
        if task.assignee_id != actor.employee_id:
            raise Forbidden("只能委派自己的任务", code="not_your_task")
        return _reassign(actor, task, _colleague(actor, assignee_id), "task.delegated", reason)


def task_transfer(*, actor: Actor, task_id: int, assignee_id: int, reason: str) -> Task:
    """A dispatcher moves someone's task to another person (needs flow.assign over the case)."""
    actor.require(ASSIGN)
    with transaction.atomic(durable=True):
        task = _task_for_update(actor, task_id)
        _ensure_open(task)
        if not Task.objects.visible_to(actor, ASSIGN).filter(pk=task.pk).exists():
            raise NotFound("任务不存在", field="id")
        return _reassign(actor, task, _colleague(actor, assignee_id), "task.transferred", reason)


# --- for a domain service's own transaction -------------------------------------------------
# A case's service (a ticket's close or bulk assignment) changes the case and its flow together:
# these run inside the caller's transaction and check nothing; the caller has authorised.


def case_tasks_transfer(
    *, instance_id: int, assignee_id: int, actor: Actor | None, reason: str
) -> int:
    """Give every open task of the instance to `assignee_id`; returns how many moved."""
    with engine.recording():
        instance = engine.lock_instance(pk=instance_id)
        if instance is None:
            return 0
        moved = 0
        for task in Task.objects.select_for_update().filter(
            instance=instance, status=TaskStatus.OPEN
        ):
            if task.assignee_id == assignee_id:
                continue
            previous, task.assignee_id = task.assignee_id, assignee_id
            task.save(update_fields=["assignee"])
            engine.event(
                instance,
                "task.transferred",
                task.node_id,
                task=task,
                actor_id=actor.employee_id if actor else None,
                data={"from": previous, "to": assignee_id, "reason": reason},
            )
            moved += 1
        return moved


def case_cancel(*, instance_id: int, actor: Actor | None, reason: str) -> bool:
    """Stop a running instance with its tasks and timers; False when it had already ended."""
    with engine.recording():
        instance = engine.lock_instance(pk=instance_id)
        if instance is None or instance.status != InstanceStatus.RUNNING:
            return False
        engine.cancel_instance(
            instance, reason=reason, actor_id=actor.employee_id if actor else None
        )
        return True


def case_start(
    *,
    tenant_id: int,
    key: str,
    data: dict[str, Any],
    business_key: str,
    region_id: int | None,
    department_id: int | None,
    owner_id: int | None,
    actor_id: int | None,
) -> Instance:
    """Start the latest version of `key` for a case created in the caller's transaction."""
    version = latest_version(tenant_id=tenant_id, key=key)
    return engine.start(
        version,
        data=data,
        business_key=business_key,
        region_id=region_id,
        department_id=department_id,
        owner_id=owner_id,
        actor_id=actor_id,
    )


# --- migration -------------------------------------------------------------------------------


def instances_migrate(
    *, actor: Actor, key: str, from_number: int, to_number: int
) -> dict[str, Any]:
    """Move running instances of one version to another where every active node id exists in the
    target with the same type; report those that cannot move (and why). Boundary timers of the
    moved tokens follow the target version. One transaction for the whole run."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True), engine.recording():
        definition = definition_get(actor=actor, key=key, lock=True)
        versions = {
            v.number: v for v in definition.versions.filter(number__in=[from_number, to_number])
        }
        if from_number not in versions or to_number not in versions:
            raise NotFound("版本不存在", field="to_number")
        source, target = versions[from_number], versions[to_number]
        moved, refused = [], []
        for instance in Instance.objects.select_for_update().filter(
            version=source, status=InstanceStatus.RUNNING
        ):
            tokens = list(instance.tokens.filter(status=TokenStatus.ACTIVE))
            missing = sorted(
                {
                    t.node_id
                    for t in tokens
                    if t.node_id not in target.spec["nodes"]
                    or target.spec["nodes"][t.node_id]["type"]
                    != source.spec["nodes"][t.node_id]["type"]
                }
            )
            if missing:
                refused.append({"instance_id": instance.pk, "missing_nodes": missing})
                continue
            instance.version = target
            instance.save(update_fields=["version"])
            for token in tokens:
                engine.rebind_boundaries(instance, token, source.spec)
            engine.event(
                instance,
                "instance.migrated",
                actor_id=actor.employee_id,
                data={"from": from_number, "to": to_number},
            )
            moved.append(instance.pk)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="flows.instances.migrated",
            subject=definition,
            data={
                "from": from_number,
                "to": to_number,
                "moved": len(moved),
                "refused": len(refused),
            },
        )
        return {"moved": moved, "refused": refused}
