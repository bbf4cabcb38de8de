"""Who gets a user task: a named person, a role within the case's region or department (everyone
holding it becomes a candidate), the least-loaded or next-in-turn of those, or the owner's manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from jingwei.org.models import Employee, EmployeeStatus
from jingwei.org.services import role_holders_covering

from .models import Instance, Task, TaskStatus


@dataclass(frozen=True)
class Pick:
    assignee_id: int | None
    candidates: list[int] = field(default_factory=list)
    rule: str = ""


def pick(instance: Instance, rules: list[dict[str, Any]], *, node_id: str) -> Pick:
    """The first rule whose `when` condition holds (empty: always) decides; none: a shared pool."""
    from .expressions import evaluate_condition

    for rule in rules:
        when = rule.get("when") or ""
        if not when or evaluate_condition(when, instance.data):
            return resolve(instance, rule, node_id=node_id)
    return Pick(None)


def resolve(instance: Instance, rule: dict[str, Any], *, node_id: str) -> Pick:
    kind = rule.get("rule") or ""
    if kind == "field":
        # The person chosen in the case's form (e.g. the engineer picked at dispatch).
        return Pick(
            _named(instance, str(instance.data.get(rule.get("field") or "", "") or "")),
            rule="field",
        )
    if kind == "user":
        return Pick(_named(instance, str(rule.get("user") or "")), rule="user")
    if kind == "manager":
        return Pick(manager_of(instance.owner_id), rule="manager")
    if kind in ("role", "least_loaded", "round_robin"):
        people = role_holders(
            instance, str(rule.get("role") or ""), str(rule.get("scope") or "region")
        )
        if kind == "least_loaded":
            return Pick(least_loaded(instance.tenant_id, people), people, kind)
        if kind == "round_robin":
            return Pick(next_in_turn(instance, node_id, people), people, kind)
        # Plain role: one candidate takes it at once; several claim it from the shared queue.
        return Pick(people[0] if len(people) == 1 else None, people, kind)
    return Pick(None, rule="")


def _named(instance: Instance, who: str) -> int | None:
    active = Employee.objects.filter(tenant_id=instance.tenant_id, status=EmployeeStatus.ACTIVE)
    match = active.filter(employee_no=who).values_list("pk", flat=True).first()
    if match is None and who.isdigit():
        match = active.filter(pk=int(who)).values_list("pk", flat=True).first()
    return match


def manager_of(employee_id: int | None) -> int | None:
    if employee_id is None:
        return None
    return Employee.objects.filter(pk=employee_id).values_list("manager_id", flat=True).first()


def role_holders(instance: Instance, role_name: str, scope: str) -> list[int]:
    """Holders of `role_name` covering the case's region (or department): see
    org.services.role_holders_covering. A case placed nowhere: every holder."""
    node = instance.department if scope == "department" else instance.region
    return role_holders_covering(
        tenant_id=instance.tenant_id,
        role_name=role_name,
        path=node.path if node is not None else None,
        scope=scope,
    )


def least_loaded(tenant_id: int, people: list[int]) -> int | None:
    if not people:
        return None
    load = dict(
        Task.objects.filter(tenant_id=tenant_id, status=TaskStatus.OPEN, assignee_id__in=people)
        .values("assignee_id")
        .annotate(n=Count("id"))
        .values_list("assignee_id", "n")
    )
    return min(people, key=lambda pk: (load.get(pk, 0), pk))


def next_in_turn(instance: Instance, node_id: str, people: list[int]) -> int | None:
    if not people:
        return None
    last = (
        Task.objects.filter(
            tenant_id=instance.tenant_id,
            node_id=node_id,
            instance__version__definition_id=instance.version.definition_id,
            assignee_id__in=people,
        )
        .order_by("-id")
        .values_list("assignee_id", flat=True)
        .first()
    )
    later = [pk for pk in people if last is not None and pk > last]
    return later[0] if later else people[0]
