"""Editing a customer: its profile, collaborators and identities. (Creating one goes through
`customer_resolve`, so a customer is never created twice for one phone.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.audit.services import changed, snapshot
from jingwei.core.errors import Conflict, Forbidden, Invalid, NotFound
from jingwei.org.scope import Actor
from jingwei.org.services import check_refs

from ..identities import IdentityInput, identity_key
from ..models import Customer, CustomerCollaborator, Identity, IdentityStatus
from .common import (
    ASSIGN,
    PROFILE_FIELDS,
    company_key,
    customer_for_write,
    ensure_still_visible,
    identity_snapshot,
    record,
)
from .ownership import owner_change_record
from .resolution import propose_lookalikes

NOT_NULL = ("kind", "name", "level", "company_name", "source", "remark")


def customer_update(*, actor: Actor, customer_id: int, changes: Mapping[str, Any]) -> Customer:
    """Change profile fields (those in `changes`; None clears region, department or owner) and,
    with `collaborator_ids`, replace the collaborators."""
    changes = dict(changes)
    collaborator_ids: Sequence[int] | None = changes.pop("collaborator_ids", None)
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise Invalid("不认识的字段", code="unknown_field", field=sorted(unknown)[0])
    for name in NOT_NULL:
        if name in changes and changes[name] is None:
            raise Invalid(f"{name} 不能为空", code="required", field=name)
    with transaction.atomic(durable=True):
        customer = customer_for_write(actor, customer_id)
        check_refs(actor.tenant_id, {**changes, "collaborator_ids": collaborator_ids or ()})
        before = snapshot(customer, PROFILE_FIELDS)
        previous_owner = customer.owner_id
        for name, value in changes.items():
            setattr(customer, name, value)
        customer.company_key = company_key(customer.kind, customer.name, customer.company_name)
        owner_moved = customer.owner_id != previous_owner
        if owner_moved and not actor.has_perm(ASSIGN):
            # Otherwise an edit would bypass the pool's claim limits and the handover log.
            raise Forbidden(
                "更换负责人需要「分配客户」权限；可从公海领取或申请交接",
                code="forbidden",
                field="owner_id",
            )
        if owner_moved:
            customer.owned_since = timezone.now() if customer.owner_id else None
        owned = ["owned_since"] if owner_moved else []
        customer.save(update_fields=[*changes, *owned, "company_key", "updated_at"])
        if owner_moved:
            owner_change_record(customer, previous_owner, actor=actor)
        collaborators = None
        if collaborator_ids is not None:
            collaborators = _set_collaborators(customer, collaborator_ids)
        ensure_still_visible(actor, customer)
        after = snapshot(customer, PROFILE_FIELDS)
        diff = changed(before, after)
        if diff or collaborators is not None:
            record(
                actor,
                "customers.customer.updated",
                customer,
                before={k: before[k] for k in diff},
                after=diff,
                data={"collaborators": collaborators} if collaborators is not None else None,
            )
        if {"name", "company_name", "kind"} & set(diff):
            propose_lookalikes(customer)
        return customer


def _set_collaborators(customer: Customer, employee_ids: Sequence[int]) -> dict[str, list[int]]:
    wanted = set(employee_ids)
    have = set(customer.collaborations.values_list("employee_id", flat=True))
    customer.collaborations.filter(employee_id__in=have - wanted).delete()
    CustomerCollaborator.objects.bulk_create(
        CustomerCollaborator(tenant_id=customer.tenant_id, customer=customer, employee_id=e)
        for e in sorted(wanted - have)
    )
    return {"added": sorted(wanted - have), "removed": sorted(have - wanted)}


def identity_add(*, actor: Actor, customer_id: int, identity: IdentityInput) -> Identity:
    """Attach an identity. One the customer already has is seen again (not an error); one that
    belongs to another customer is refused (409 `identity_taken`): merge the two if they are one."""
    key = identity_key(identity.kind, identity.value, identity.namespace)
    with transaction.atomic(durable=True):
        customer = customer_for_write(actor, customer_id)
        now = timezone.now()
        existing = Identity.objects.filter(
            tenant_id=actor.tenant_id,
            kind=key.kind,
            namespace=key.namespace,
            value=key.value,
            status=IdentityStatus.ACTIVE,
        ).first()
        if existing is not None and existing.customer_id == customer.pk:
            existing.last_seen_at = now
            existing.verified = existing.verified or identity.verified
            existing.save(update_fields=["last_seen_at", "verified"])
            return existing
        if existing is not None:
            raise _taken()
        try:
            with transaction.atomic():
                created = Identity.objects.create(
                    tenant_id=actor.tenant_id,
                    customer=customer,
                    kind=key.kind,
                    namespace=key.namespace,
                    value=key.value,
                    verified=identity.verified,
                    source=identity.source or "manual",
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            raise _taken() from None  # registered concurrently for someone else
        record(
            actor,
            "customers.identity.added",
            customer,
            data={"identity": identity_snapshot(created)},
        )
        propose_lookalikes(customer)
        return created


def _taken() -> Conflict:
    return Conflict(
        "该身份已属于另一位客户；如果是同一人，请合并这两位客户",
        code="identity_taken",
        field="value",
    )


def identity_remove(*, actor: Actor, customer_id: int, identity_id: int) -> Identity:
    """Retire an identity: the row stays (history, and an un-merge can still move it), its key is
    free for another customer. Removing a removed identity changes nothing."""
    with transaction.atomic(durable=True):
        customer = customer_for_write(actor, customer_id)
        identity = (
            Identity.objects.select_for_update()
            .filter(tenant_id=actor.tenant_id, customer=customer, pk=identity_id)
            .first()
        )
        if identity is None:
            raise NotFound("身份不存在", field="identity_id")
        if identity.status == IdentityStatus.REMOVED:
            return identity
        identity.status = IdentityStatus.REMOVED
        identity.removed_at = timezone.now()
        identity.save(update_fields=["status", "removed_at"])
        record(
            actor,
            "customers.identity.removed",
            customer,
            data={"identity": identity_snapshot(identity)},
        )
        return identity
