"""Identity resolution: which customer a set of identities belongs to, and the look-alikes a
person should look at.

`customer_resolve` is how every channel registers a customer (the console, the API, an import, a
WeCom contact, a shop order): the customer owning any of the stated keys gets the new identities,
or a new customer is created. Keys owned by two different customers are never merged silently:
the identities go to the first and a merge candidate is recorded.

Concurrency: the key's unique constraint is the arbiter. Two resolves of the same new phone at
once both find nothing and both insert; the second insert waits for the first transaction and
then fails, its savepoint rolls back (taking its new customer with it), and the next attempt
finds the committed identity. So one phone, one customer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jingwei.audit.services import snapshot
from jingwei.core.errors import Conflict, Invalid
from jingwei.org.scope import Actor
from jingwei.org.services import check_refs

from ..identities import IdentityInput, IdentityKey, IdentityKind, identity_key
from ..models import (
    CandidateReason,
    CandidateStatus,
    Customer,
    CustomerCollaborator,
    CustomerKind,
    Identity,
    IdentityStatus,
    MergeCandidate,
)
from .common import (
    EDIT,
    FILLABLE,
    PROFILE_FIELDS,
    company_key,
    ensure_still_visible,
    identity_snapshot,
    lock_customers,
    record,
)

ATTEMPTS = 3
SAME_NAME_LIMIT = 50  # look-alikes compared per resolve: a very common name stays cheap


class _Retry(Exception):
    """What was read moved before it was locked (a concurrent merge): start again."""


@dataclass
class Resolution:
    customer: Customer
    outcome: str  # "created" | "matched"
    attached: list[Identity] = field(default_factory=list)  # new identity rows
    seen: list[Identity] = field(default_factory=list)  # known identities seen again
    conflicts: list[int] = field(default_factory=list)  # other customers owning stated keys
    candidates: list[MergeCandidate] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Stated:
    key: IdentityKey
    verified: bool
    source: str


def stated_identities(identities: Sequence[IdentityInput]) -> list[_Stated]:
    """Normalise what the caller stated, in order, once per key (a key stated twice counts as
    verified if either says so). A bad value is refused naming `identities.<n>.<field>`."""
    out: dict[IdentityKey, _Stated] = {}
    for index, item in enumerate(identities):
        try:
            key = identity_key(item.kind, item.value, item.namespace)
        except Invalid as exc:
            raise Invalid(
                exc.message, code=exc.code, field=f"identities.{index}.{exc.field}"
            ) from None
        if key in out:
            previous = out[key]
            out[key] = _Stated(key, previous.verified or item.verified, previous.source)
        else:
            out[key] = _Stated(key, item.verified, item.source[:50])
    return list(out.values())


def customer_resolve(
    *,
    actor: Actor | None,
    tenant_id: int | None = None,
    identities: Sequence[IdentityInput] = (),
    profile: Mapping[str, Any] | None = None,
    collaborator_ids: Sequence[int] = (),
    source: str = "",
) -> Resolution:
    """Find or create the customer these identities belong to (one transaction).

    `actor` None means the system acts (a sync or a webhook) for `tenant_id`, unchecked. With an
    actor, it needs customer.edit, and the customer found must be one it may edit: a customer of
    someone else's scope answers 409 `customer_exists_elsewhere` (nothing written), so an agent
    learns the customer exists without seeing it. `profile` holds PROFILE_FIELDS; for a customer
    found, only its blank FILLABLE fields are filled.
    """
    with transaction.atomic(durable=True):
        return resolve_in_transaction(
            actor=actor,
            tenant_id=tenant_id,
            identities=identities,
            profile=profile,
            collaborator_ids=collaborator_ids,
            source=source,
        )


def resolve_in_transaction(
    *,
    actor: Actor | None,
    tenant_id: int | None = None,
    identities: Sequence[IdentityInput] = (),
    profile: Mapping[str, Any] | None = None,
    collaborator_ids: Sequence[int] = (),
    source: str = "",
) -> Resolution:
    """`customer_resolve` inside the caller's transaction (a batch import's, say). The locks it
    takes on the customers found are held until that transaction ends."""
    if actor is not None:
        actor.require(EDIT)
        tenant_id = actor.tenant_id
    if tenant_id is None:
        raise ValueError("customer_resolve needs an actor or a tenant_id")
    data = {k: v for k, v in (profile or {}).items() if v is not None}
    stated = stated_identities(identities)
    if not stated and not data.get("name"):
        raise Invalid("请填写客户名称或至少一个身份", code="required", field="name")
    check_refs(tenant_id, {**data, "collaborator_ids": collaborator_ids})
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                return _resolve_once(actor, tenant_id, stated, data, collaborator_ids, source)
        except (IntegrityError, _Retry):
            if attempt == ATTEMPTS - 1:
                raise Conflict(
                    "同一客户正被同时登记，请稍后重试", code="resolve_contended"
                ) from None
    raise AssertionError("unreachable")


def _owners(tenant_id: int, stated: list[_Stated]) -> dict[IdentityKey, Identity]:
    if not stated:
        return {}
    match = Q()
    for s in stated:
        match |= Q(kind=s.key.kind, namespace=s.key.namespace, value=s.key.value)
    rows = Identity.objects.filter(tenant_id=tenant_id, status=IdentityStatus.ACTIVE).filter(match)
    return {IdentityKey(i.kind, i.namespace, i.value): i for i in rows}


def _resolve_once(
    actor: Actor | None,
    tenant_id: int,
    stated: list[_Stated],
    data: dict[str, Any],
    collaborator_ids: Sequence[int],
    source: str,
) -> Resolution:
    now = timezone.now()
    found = _owners(tenant_id, stated)
    owners: list[int] = []
    for s in stated:
        owner = found[s.key].customer_id if s.key in found else None
        if owner is not None and owner not in owners:
            owners.append(owner)

    locked: dict[int, Customer] = {}
    if owners:
        locked = lock_customers(owners)
        # A merge may have moved an identity (and retired its customer) since we read it.
        if len(locked) != len(owners) or any(c.merged_into_id for c in locked.values()):
            raise _Retry
        if (
            Identity.objects.filter(
                pk__in=[i.pk for i in found.values()], status=IdentityStatus.ACTIVE
            )
            .exclude(customer_id__in=owners)
            .exists()
        ):
            raise _Retry
        customer = locked[owners[0]]
        if (
            actor is not None
            and not Customer.objects.visible_to(actor, EDIT).filter(pk=customer.pk).exists()
        ):
            raise Conflict(
                "该客户已存在，但不在您的数据范围内，请联系其负责人或主管",
                code="customer_exists_elsewhere",
            )
        result = Resolution(customer=customer, outcome="matched")
        result.filled = _fill_blanks(customer, data)
    else:
        customer = _create(actor, tenant_id, data)
        result = Resolution(customer=customer, outcome="created")

    for s in stated:
        known = found.get(s.key)
        if known is None:
            result.attached.append(_attach(customer, s, source, now))
        elif known.customer_id == customer.pk:
            known.last_seen_at = now
            known.verified = known.verified or s.verified
            known.save(update_fields=["last_seen_at", "verified"])
            result.seen.append(known)
        else:
            if known.customer_id not in result.conflicts:
                result.conflicts.append(known.customer_id)
            proposed = propose(
                customer,
                locked[known.customer_id],
                CandidateReason.SHARED_IDENTITY,
                100,
                {"identity_ids": [known.pk]},
            )
            if proposed is not None and proposed not in result.candidates:
                result.candidates.append(proposed)

    _add_collaborators(customer, collaborator_ids)
    ensure_still_visible(actor, customer)
    _record(actor, result)
    result.candidates += [c for c in propose_lookalikes(customer) if c not in result.candidates]
    return result


def _create(actor: Actor | None, tenant_id: int, data: dict[str, Any]) -> Customer:
    fields = {k: data[k] for k in PROFILE_FIELDS if k in data and k != "name"}
    if actor is not None:
        fields.setdefault("owner_id", actor.employee_id)
    name = str(data.get("name") or "").strip() or "未命名客户"
    customer = Customer(tenant_id=tenant_id, name=name, **fields)
    customer.company_key = company_key(customer.kind, customer.name, customer.company_name)
    customer.save()
    return customer


def _fill_blanks(customer: Customer, data: dict[str, Any]) -> list[str]:
    filled = [f for f in FILLABLE if data.get(f) not in (None, "") and not getattr(customer, f)]
    if filled:
        for f in filled:
            setattr(customer, f, data[f])
        customer.company_key = company_key(customer.kind, customer.name, customer.company_name)
        customer.save(update_fields=[*filled, "company_key", "updated_at"])
    return filled


def _attach(customer: Customer, s: _Stated, source: str, now: datetime) -> Identity:
    """Insert the identity; a concurrent owner of its key makes this fail (IntegrityError), which
    rolls the attempt back for the caller to retry."""
    return Identity.objects.create(
        tenant_id=customer.tenant_id,
        customer=customer,
        kind=s.key.kind,
        namespace=s.key.namespace,
        value=s.key.value,
        verified=s.verified,
        source=(s.source or source)[:50],
        first_seen_at=now,
        last_seen_at=now,
    )


def _add_collaborators(customer: Customer, employee_ids: Sequence[int]) -> None:
    have = set(customer.collaborations.values_list("employee_id", flat=True))
    CustomerCollaborator.objects.bulk_create(
        CustomerCollaborator(tenant_id=customer.tenant_id, customer=customer, employee_id=e)
        for e in sorted(set(employee_ids) - have)
    )


def _record(actor: Actor | None, result: Resolution) -> None:
    customer = result.customer
    data: dict[str, Any] = {
        "identities": [identity_snapshot(i) for i in result.attached],
        "seen": [i.pk for i in result.seen],
    }
    if result.conflicts:
        data["conflicts"] = result.conflicts
    if result.outcome == "created":
        record(actor, "customers.customer.created", customer, after=snapshot(customer), data=data)
    elif result.attached or result.filled or result.conflicts:
        data["filled"] = result.filled
        record(actor, "customers.customer.resolved", customer, data=data)


# --- merge candidates --------------------------------------------------------------------------


def propose(
    a: Customer, b: Customer, reason: str, score: int, detail: dict[str, Any]
) -> MergeCandidate | None:
    """Record that `a` and `b` may be one customer, once per pair. A proposal already open is
    upgraded to the stronger reason; a decided pair (rejected, or accepted and later undone) is
    left as decided. Returns the open proposal, if any."""
    low, high = (a, b) if a.pk < b.pk else (b, a)
    existing = MergeCandidate.objects.filter(
        tenant_id=a.tenant_id, customer_id=low.pk, other_id=high.pk
    ).first()
    if existing is not None:
        if existing.status != CandidateStatus.PROPOSED:
            return None
        if score > existing.score:
            existing.reason, existing.score, existing.detail = reason, score, detail
            existing.save(update_fields=["reason", "score", "detail"])
        return existing
    try:
        with transaction.atomic():
            candidate = MergeCandidate.objects.create(
                tenant_id=a.tenant_id,
                customer=low,
                other=high,
                reason=reason,
                score=score,
                detail=detail,
            )
    except IntegrityError:
        return None  # proposed concurrently by another resolve: theirs stands
    record(
        None,
        "customers.candidate.proposed",
        low,
        data={"candidate_id": candidate.pk, "other_id": high.pk, "reason": reason, "score": score},
    )
    return candidate


def phone_distance(a: str, b: str) -> int | None:
    """How many digits two numbers of the same length differ in (None for different lengths)."""
    if len(a) != len(b):
        return None
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


def propose_lookalikes(customer: Customer) -> list[MergeCandidate]:
    """Propose the active customers that look like `customer`:

    - a person with the same name whose phone differs in one or two digits (a typo, the last
      digits misheard): score 90 for one digit, 80 for two;
    - a person with the same name and the same company: 70;
    - a company with the same company name (legal form and punctuation ignored): 75.

    Same name alone proposes nothing (张伟 is many people); neither do colleagues at one company.
    """
    active = Customer.objects.filter(tenant_id=customer.tenant_id).active().exclude(pk=customer.pk)
    found: list[MergeCandidate] = []
    if customer.kind == CustomerKind.COMPANY:
        if customer.company_key:
            for other in active.filter(kind=CustomerKind.COMPANY, company_key=customer.company_key)[
                :SAME_NAME_LIMIT
            ]:
                proposal = propose(customer, other, CandidateReason.SAME_COMPANY, 75, {})
                if proposal is not None:
                    found.append(proposal)
        return found
    namesakes = list(active.filter(kind=CustomerKind.PERSON, name=customer.name)[:SAME_NAME_LIMIT])
    if not namesakes:
        return found
    phones = Identity.objects.filter(
        tenant_id=customer.tenant_id, kind=IdentityKind.PHONE, status=IdentityStatus.ACTIVE
    )
    mine = list(phones.filter(customer=customer).values_list("pk", "value"))
    theirs: dict[int, list[tuple[int, str]]] = {}
    for pk, owner, value in phones.filter(customer__in=namesakes).values_list(
        "pk", "customer_id", "value"
    ):
        theirs.setdefault(owner, []).append((pk, value))
    for other in namesakes:
        best: tuple[int, int, int] | None = None
        for my_pk, my_value in mine:
            for their_pk, their_value in theirs.get(other.pk, []):
                d = phone_distance(my_value, their_value)
                if d is not None and 1 <= d <= 2 and (best is None or d < best[0]):
                    best = (d, my_pk, their_pk)
        proposal = None
        if best is not None:
            proposal = propose(
                customer,
                other,
                CandidateReason.SIMILAR_PHONE,
                90 if best[0] == 1 else 80,
                {"identity_ids": [best[1], best[2]], "digits_differing": best[0]},
            )
        elif customer.company_key and other.company_key == customer.company_key:
            proposal = propose(customer, other, CandidateReason.SAME_NAME_COMPANY, 70, {})
        if proposal is not None:
            found.append(proposal)
    return found
