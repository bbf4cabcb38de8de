"""Merging two customers into one, and undoing it, without losing anything.

Merging B into A moves every row B owns to A, kind by kind, as registered with
`register_movable` (identities and collaborators here; tags, timeline events, tickets and orders
register theirs from their own apps), fills A's blank profile fields from B, and marks B merged
into A. The MergeRecord lists exactly the ids that moved and the fields filled. Undoing moves
exactly those rows back (those still on A: a row a person has since moved elsewhere stays where
they put it), empties the filled fields that nobody changed since, and makes B active again.

Undo order: a merge can be undone while its target is active. If A was itself merged into C
later, undo that first (the console offers the merges of a customer newest first). This keeps
every undo exact: what moved from B is on A, not scattered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from jingwei.core.errors import Conflict, DomainError, Invalid, NotFound
from jingwei.org.scope import Actor

from ..models import (
    CandidateStatus,
    Customer,
    CustomerCollaborator,
    CustomerEvent,
    CustomerTag,
    FollowUp,
    Identity,
    MergeCandidate,
    MergeRecord,
    OwnershipChange,
)
from .common import EDIT, FILLABLE, company_key, ensure_still_visible, lock_customers, record


@dataclass(frozen=True)
class Movable:
    """A kind of row that belongs to a customer through `field` and follows it into a merge.
    `unique_with`: fields that, with the customer, are unique, so a row whose values the target
    already has stays behind with the source (and is back in place when it is restored)."""

    label: str
    model: type[models.Model]
    field: str = "customer"
    unique_with: tuple[str, ...] = ()


MOVABLES: dict[str, Movable] = {}


def register_movable(
    label: str,
    model: type[models.Model],
    *,
    field: str = "customer",
    unique_with: tuple[str, ...] = (),
) -> None:
    """Make rows of `model` (tenant-owned, pointing at a Customer through `field`) move with a
    merge. `label` is stored in merge records: keep it stable once merges have used it."""
    MOVABLES[label] = Movable(label, model, field, unique_with)


register_movable("customers.identity", Identity)
register_movable("customers.collaborator", CustomerCollaborator, unique_with=("employee",))
register_movable("customers.tag", CustomerTag, unique_with=("tag",))
register_movable("customers.event", CustomerEvent)
register_movable("customers.follow_up", FollowUp)
register_movable("customers.ownership_change", OwnershipChange)


def _pair(a: int, b: int) -> Q:
    low, high = sorted((a, b))
    return Q(customer_id=low, other_id=high)


def _lock_pair(actor: Actor, target_id: int, source_id: int) -> tuple[Customer, Customer]:
    editable = Customer.objects.visible_to(actor, EDIT)
    if not editable.filter(pk=target_id).exists():
        raise NotFound("客户不存在", field="customer_id")
    if not editable.filter(pk=source_id).exists():
        raise NotFound("客户不存在", field="source_id")
    locked = lock_customers([target_id, source_id])
    return locked[target_id], locked[source_id]


def customer_merge(
    *, actor: Actor, target_id: int, source_id: int, reason: str = ""
) -> MergeRecord:
    """Merge customer `source_id` into `target_id` (both active and editable by the actor)."""
    with transaction.atomic(durable=True):
        return merge_in_transaction(
            actor=actor, target_id=target_id, source_id=source_id, reason=reason
        )


def merge_in_transaction(
    *, actor: Actor, target_id: int, source_id: int, reason: str = ""
) -> MergeRecord:
    """`customer_merge` inside the caller's transaction (a batch import's, the demo loader's)."""
    actor.require(EDIT)
    return _merge(actor, target_id, source_id, reason)


def _merge(actor: Actor, target_id: int, source_id: int, reason: str) -> MergeRecord:
    if target_id == source_id:
        raise Invalid("不能把客户合并到它自己", code="same_customer", field="source_id")
    target, source = _lock_pair(actor, target_id, source_id)
    if target.merged_into_id is not None:
        raise Conflict(
            f"客户 {target.pk} 已合并到其他客户，不能再作为合并目标",
            code="customer_merged",
            field="customer_id",
        )
    if source.merged_into_id is not None:
        raise Conflict(f"客户 {source.pk} 已经合并过", code="already_merged", field="source_id")
    now = timezone.now()

    moved: dict[str, list[int]] = {}
    for movable in MOVABLES.values():
        rows = movable.model._default_manager.filter(
            tenant_id=actor.tenant_id, **{movable.field: source}
        )
        if movable.unique_with:
            # Rows whose unique values the target already has stay behind with the source.
            taken = set(
                movable.model._default_manager.filter(
                    tenant_id=actor.tenant_id, **{movable.field: target}
                ).values_list(*movable.unique_with)
            )
            staying = [
                pk
                for pk, *values in rows.values_list("pk", *movable.unique_with)
                if tuple(values) in taken
            ]
            rows = rows.exclude(pk__in=staying)
        ids = sorted(rows.values_list("pk", flat=True))
        if ids:
            movable.model._default_manager.filter(pk__in=ids).update(**{movable.field: target})
            moved[movable.label] = ids

    filled: dict[str, list[Any]] = {}
    for name in FILLABLE:
        if not getattr(target, name) and getattr(source, name):
            filled[name] = [getattr(target, name), getattr(source, name)]
            setattr(target, name, getattr(source, name))
    target.company_key = company_key(target.kind, target.name, target.company_name)
    # An owner taken over from the source keeps the source's ownership clock (the pool's
    # no-follow-up return counts from it), as do its follow-up dates when the target has none.
    carried = ["owned_since"] if "owner_id" in filled else []
    for name in ("last_followed_at", "next_follow_up_at"):
        if getattr(source, name) and (
            not getattr(target, name) or getattr(source, name) > getattr(target, name)
        ):
            carried.append(name)
    for name in carried:
        setattr(target, name, getattr(source, name))
    target.save(update_fields=[*filled, *carried, "company_key", "updated_at"])
    source.merged_into = target
    source.merged_at = now
    source.save(update_fields=["merged_into", "merged_at", "updated_at"])

    merge = MergeRecord.objects.create(
        tenant_id=actor.tenant_id,
        target=target,
        source=source,
        reason=reason,
        moved=moved,
        filled=filled,
        merged_by_id=actor.employee_id,
        merged_at=now,
    )
    # Whatever proposed this pair is settled by the merge.
    MergeCandidate.objects.filter(
        _pair(target.pk, source.pk), tenant_id=actor.tenant_id, status=CandidateStatus.PROPOSED
    ).update(status=CandidateStatus.ACCEPTED, decided_by_id=actor.employee_id, decided_at=now)
    ensure_still_visible(actor, target)
    summary = {
        "merge_id": merge.pk,
        "source_id": source.pk,
        "target_id": target.pk,
        "moved": {label: len(ids) for label, ids in moved.items()},
        "filled": sorted(filled),
        "reason": reason,
    }
    record(actor, "customers.merged", target, data=summary)
    record(actor, "customers.customer.merged_into", source, data=summary)
    return merge


def merge_undo(*, actor: Actor, merge_id: int, reason: str = "") -> MergeRecord:
    """Un-merge: the source is active again with exactly what moved from it."""
    actor.require(EDIT)
    with transaction.atomic(durable=True):
        merge = (
            MergeRecord.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, pk=merge_id)
            .first()
        )
        editable = Customer.objects.visible_to(actor, EDIT)
        if merge is None or editable.filter(pk__in=[merge.target_id, merge.source_id]).count() < 2:
            raise NotFound("合并记录不存在", field="merge_id")
        locked = lock_customers([merge.target_id, merge.source_id])
        target, source = locked[merge.target_id], locked[merge.source_id]
        if merge.undone_at is not None:
            raise Conflict("这次合并已经拆分过", code="already_undone", field="merge_id")
        if source.merged_into_id != target.pk:
            raise Conflict("客户的合并状态已变化，请刷新后重试", code="merge_changed")
        if target.merged_into_id is not None:
            raise Conflict(
                f"客户 {target.pk} 之后又被合并到客户 {target.merged_into_id}，请先拆分那次合并",
                code="target_merged",
                field="merge_id",
            )
        now = timezone.now()
        restored: dict[str, int] = {}
        for label, ids in merge.moved.items():
            movable = MOVABLES.get(label)
            if movable is None:
                raise DomainError(
                    f"无法拆分：合并时移动的 {label} 已不再登记", code="unknown_movable"
                )
            restored[label] = movable.model._default_manager.filter(
                tenant_id=actor.tenant_id, pk__in=ids, **{movable.field: target}
            ).update(**{movable.field: source})
        emptied = []
        for name, (before, after) in merge.filled.items():
            if getattr(target, name) == after:
                setattr(target, name, before)
                emptied.append(name)
        target.company_key = company_key(target.kind, target.name, target.company_name)
        target.save(update_fields=[*emptied, "company_key", "updated_at"])
        source.merged_into = None
        source.merged_at = None
        source.save(update_fields=["merged_into", "merged_at", "updated_at"])
        merge.undone_at = now
        merge.undone_by_id = actor.employee_id
        merge.undo_reason = reason
        merge.save(update_fields=["undone_at", "undone_by", "undo_reason"])
        # Split by a person: the pair is not proposed again.
        MergeCandidate.objects.filter(
            _pair(target.pk, source.pk), tenant_id=actor.tenant_id
        ).update(
            status=CandidateStatus.REJECTED,
            decided_by_id=actor.employee_id,
            decided_at=now,
            note="已拆分",
        )
        summary = {
            "merge_id": merge.pk,
            "source_id": source.pk,
            "target_id": target.pk,
            "restored": restored,
            "emptied": emptied,
            "reason": reason,
        }
        record(actor, "customers.unmerged", target, data=summary)
        record(actor, "customers.customer.restored", source, data=summary)
        return merge


# --- deciding candidates -----------------------------------------------------------------------


def _candidate_for_update(actor: Actor, candidate_id: int) -> MergeCandidate:
    candidate = (
        MergeCandidate.objects.select_for_update()
        .filter(tenant_id=actor.tenant_id, pk=candidate_id)
        .first()
    )
    editable = Customer.objects.visible_to(actor, EDIT)
    if (
        candidate is None
        or editable.filter(pk__in=[candidate.customer_id, candidate.other_id]).count() < 2
    ):
        raise NotFound("疑似重复记录不存在", field="candidate_id")
    if candidate.status != CandidateStatus.PROPOSED:
        raise Conflict("这条疑似重复记录已处理", code="candidate_decided", field="candidate_id")
    return candidate


def candidate_accept(
    *, actor: Actor, candidate_id: int, keep_id: int | None = None, note: str = ""
) -> MergeRecord:
    """Merge the pair: into `keep_id` (either of the two; by default the older customer)."""
    actor.require(EDIT)
    with transaction.atomic(durable=True):
        candidate = _candidate_for_update(actor, candidate_id)
        pair = (candidate.customer_id, candidate.other_id)
        keep = candidate.customer_id if keep_id is None else keep_id
        if keep not in pair:
            raise Invalid("保留的客户应为这两位之一", code="not_in_pair", field="keep_id")
        drop = pair[1] if keep == pair[0] else pair[0]
        merge = _merge(actor, keep, drop, note or candidate.get_reason_display())
        merge.candidate = candidate
        merge.save(update_fields=["candidate"])
        candidate.status = CandidateStatus.ACCEPTED
        candidate.note = note
        candidate.decided_by_id = actor.employee_id
        candidate.decided_at = merge.merged_at
        candidate.save(update_fields=["status", "note", "decided_by", "decided_at"])
        return merge


def candidate_reject(*, actor: Actor, candidate_id: int, note: str = "") -> MergeCandidate:
    """Not the same customer: the pair is not proposed again."""
    actor.require(EDIT)
    with transaction.atomic(durable=True):
        candidate = _candidate_for_update(actor, candidate_id)
        candidate.status = CandidateStatus.REJECTED
        candidate.note = note
        candidate.decided_by_id = actor.employee_id
        candidate.decided_at = timezone.now()
        candidate.save(update_fields=["status", "note", "decided_by", "decided_at"])
        record(
            actor,
            "customers.candidate.rejected",
            Customer.objects.get(pk=candidate.customer_id),
            data={"candidate_id": candidate.pk, "other_id": candidate.other_id, "note": note},
        )
        return candidate
