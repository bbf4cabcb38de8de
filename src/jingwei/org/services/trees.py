"""Department and region trees: create, move (with the whole subtree), delete.

Every tree write first locks the tenant row: two moves at once would otherwise re-path from stale
parents (a node left behind its subtree) or deadlock on each other's rows.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from django.db import transaction
from django.db.models import QuerySet

from jingwei.audit.services import audit_record, snapshot
from jingwei.core.errors import Conflict, DomainError, NotFound
from jingwei.org.models import Employee, RoleAssignment, Tenant, TreeNode
from jingwei.org.scope import Actor

from .common import MANAGE

_Node = TypeVar("_Node", bound=TreeNode)

MAX_DEPTH = 12  # levels; a path of 12 ids stays far inside the 255-character column


def _rows(model: type[TreeNode], actor: Actor) -> QuerySet[Any]:
    # Through QuerySet[Any]: django-stubs cannot resolve "self" relations on the abstract base.
    return cast("QuerySet[Any]", model.objects.filter(tenant_id=actor.tenant_id))


def _lock_tree(actor: Actor) -> None:
    Tenant.objects.select_for_update().filter(pk=actor.tenant_id).first()


def _node(model: type[_Node], actor: Actor, node_id: int) -> _Node:
    node = _rows(model, actor).filter(pk=node_id).first()
    if node is None:
        raise NotFound(f"{model._meta.verbose_name}不存在", field="id")
    return cast(_Node, node)


def _parent(model: type[_Node], actor: Actor, parent_id: int | None) -> _Node | None:
    if parent_id is None:
        return None
    parent = _rows(model, actor).filter(pk=parent_id).first()
    if parent is None:
        raise DomainError(
            f"上级{model._meta.verbose_name}不存在", code="invalid_parent", field="parent_id"
        )
    return cast(_Node, parent)


def _too_deep(depth: int) -> DomainError:
    return DomainError(f"层级不能超过 {MAX_DEPTH} 级", code="tree_too_deep", field="parent_id")


def tree_node_create(
    model: type[_Node], *, actor: Actor, name: str, parent_id: int | None, **extra: Any
) -> _Node:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        _lock_tree(actor)
        parent = _parent(model, actor, parent_id)
        if parent is not None and parent.depth + 1 > MAX_DEPTH:
            raise _too_deep(parent.depth + 1)
        node = model(tenant_id=actor.tenant_id, name=name, parent=parent, **extra)
        node.save()
        node.save_path()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.created",
            subject=node,
            after=snapshot(node),
        )
        return node


def tree_node_update(
    model: type[_Node], *, actor: Actor, node_id: int, changes: dict[str, Any]
) -> _Node:
    """Rename, re-parent (moving the whole subtree) or change other fields of a node."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        _lock_tree(actor)
        node = _node(model, actor, node_id)
        before = snapshot(node)
        if "parent_id" in changes:
            _move(model, actor, node, _parent(model, actor, changes.pop("parent_id")))
        for key, value in changes.items():
            setattr(node, key, value)
        node.save()
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.updated",
            subject=node,
            before=before,
            after=snapshot(node),
        )
        return node


def _move(model: type[TreeNode], actor: Actor, node: TreeNode, parent: TreeNode | None) -> None:
    if parent is not None and parent.path.startswith(node.path):
        raise DomainError("不能移动到自己或自己的下级之下", code="tree_cycle", field="parent_id")
    old_path = node.path
    node.parent = parent
    node.path = f"{parent.path if parent else '/'}{node.pk}/"
    if node.path == old_path:
        return
    subtree = list(_rows(model, actor).filter(path__startswith=old_path).exclude(pk=node.pk))
    old_depth = old_path.count("/") - 1
    deepest_below = max([old_depth, *(d.depth for d in subtree)]) - old_depth
    if node.depth + deepest_below > MAX_DEPTH:
        raise _too_deep(node.depth + deepest_below)
    for child in subtree:
        child.path = node.path + child.path[len(old_path) :]
        child.save(update_fields=["path"])


def tree_node_delete(model: type[_Node], *, actor: Actor, node_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        _lock_tree(actor)
        node = _node(model, actor, node_id)
        field = f"{model._meta.model_name}_id"
        if _rows(model, actor).filter(parent_id=node.pk).exists():
            raise Conflict(f"{node.name} 还有下级，不能删除", code="has_children")
        if Employee.objects.filter(tenant_id=actor.tenant_id, **{field: node.pk}).exists():
            raise Conflict(f"{node.name} 下还有员工，不能删除", code="has_employees")
        if RoleAssignment.objects.filter(tenant_id=actor.tenant_id, **{field: node.pk}).exists():
            raise Conflict(f"{node.name} 仍被角色授权引用，不能删除", code="in_use")
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action=f"org.{model._meta.model_name}.deleted",
            subject=node,
            before=snapshot(node),
        )
        node.delete()
