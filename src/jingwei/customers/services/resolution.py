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

from jingwei.audit.services import audit_record, snapshot
from jingwei.core.errors import Conflict, DomainError, Invalid
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
    OwnershipChange,
    OwnershipChangeKind,
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
from .ownership import owner_change_record

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
    customer.owned_since = timezone.now() if customer.owner_id else None
    customer.save()
    if customer.owner_id:
        owner_change_record(customer, None, actor=actor)
    return customer


def _fill_blanks(customer: Customer, data: dict[str, Any]) -> list[str]:
    filled = [f for f in FILLABLE if data.get(f) not in (None, "") and not getattr(customer, f)]
    if filled:
        for f in filled:
            setattr(customer, f, data[f])
        customer.company_key = company_key(customer.kind, customer.name, customer.company_name)
        if "owner_id" in filled:  # a pool customer registered again, with an owner
            customer.owned_since = timezone.now()
        owned = ["owned_since"] if "owner_id" in filled else []
        customer.save(update_fields=[*filled, *owned, "company_key", "updated_at"])
        if owned:
            owner_change_record(customer, None, actor=None)
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


# --- many at once --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveItem:
    """One customer as a bulk channel states it (a row of an import, a contact of a sync)."""

    identities: Sequence[IdentityInput] = ()
    profile: Mapping[str, Any] = field(default_factory=dict)


def resolve_many(
    *,
    actor: Actor | None,
    tenant_id: int | None = None,
    items: Sequence[ResolveItem],
    source: str = "",
) -> list[Resolution]:
    """`resolve_in_transaction` for many customers at once, in the caller's transaction, with the
    same outcome as resolving them one by one in order, in a handful of statements.

    The common cases go in bulk: every stated key unknown (a new customer), or every known key
    on one customer and nothing else in the batch stating the same keys (seen again). The rest
    (keys on two customers, two items stating one key, a customer the actor may not edit, a
    concurrent writer) is resolved one by one through `resolve_in_transaction`, after the bulk
    part, so the order of outcomes only differs where items did not touch each other.
    One audit event records the batch (ids created and matched) instead of one per customer.
    A bad identity is refused naming `items.<n>.identities.<m>.<field>`.
    """
    if actor is not None:
        actor.require(EDIT)
        tenant_id = actor.tenant_id
    if tenant_id is None:
        raise ValueError("resolve_many needs an actor or a tenant_id")
    stated: list[list[_Stated]] = []
    profiles: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            stated.append(stated_identities(item.identities))
        except Invalid as exc:
            raise Invalid(exc.message, code=exc.code, field=f"items.{index}.{exc.field}") from None
        data = {k: v for k, v in item.profile.items() if v is not None}
        if not stated[-1] and not data.get("name"):
            raise Invalid(
                "请填写客户名称或至少一个身份", code="required", field=f"items.{index}.name"
            )
        profiles.append(data)
    _check_refs_many(tenant_id, profiles)

    results: list[Resolution | None] = [None] * len(items)
    slow: list[int] = []
    try:
        with transaction.atomic():
            _bulk(actor, tenant_id, stated, profiles, source, results, slow)
    except IntegrityError:
        # A concurrent writer took one of the keys: resolve every item carefully instead.
        results, slow = [None] * len(items), list(range(len(items)))
    for index in slow:
        results[index] = resolve_in_transaction(
            actor=actor,
            tenant_id=tenant_id,
            identities=items[index].identities,
            profile=profiles[index],
            source=source,
        )
    return [r for r in results if r is not None]


def _check_refs_many(tenant_id: int, profiles: list[dict[str, Any]]) -> None:
    """Every region, department and owner the profiles name exists in the tenant (one query per
    kind of reference); the first item naming a missing one is refused by its index."""
    from jingwei.org.models import Department, Employee, Region

    for name, model in (
        ("region_id", Region),
        ("department_id", Department),
        ("owner_id", Employee),
    ):
        wanted = {p[name] for p in profiles if p.get(name) is not None}
        if not wanted:
            continue
        present = set(
            model.objects.filter(tenant_id=tenant_id, pk__in=wanted).values_list("pk", flat=True)
        )
        for index, p in enumerate(profiles):
            if p.get(name) is not None and p[name] not in present:
                raise DomainError(
                    f"{model._meta.verbose_name}不存在",
                    code="invalid_reference",
                    field=f"items.{index}.{name}",
                )


def _owners_many(tenant_id: int, keys: set[IdentityKey]) -> dict[IdentityKey, tuple[int, int]]:
    """key → (identity id, customer id) for the active identities among `keys`, one query per
    kind and namespace (and per 1,000 values)."""
    by_space: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        by_space.setdefault((key.kind, key.namespace), []).append(key.value)
    found: dict[IdentityKey, tuple[int, int]] = {}
    active = Identity.objects.filter(tenant_id=tenant_id, status=IdentityStatus.ACTIVE)
    for (kind, namespace), values in by_space.items():
        for start in range(0, len(values), 1000):
            rows = active.filter(
                kind=kind, namespace=namespace, value__in=values[start : start + 1000]
            ).values_list("value", "pk", "customer_id")
            for value, pk, customer_id in rows:
                found[IdentityKey(kind, namespace, value)] = (pk, customer_id)
    return found


def _bulk(
    actor: Actor | None,
    tenant_id: int,
    stated: list[list[_Stated]],
    profiles: list[dict[str, Any]],
    source: str,
    results: list[Resolution | None],
    slow: list[int],
) -> None:
    now = timezone.now()
    mentions: dict[IdentityKey, int] = {}
    for keys in stated:
        for s in keys:
            mentions[s.key] = mentions.get(s.key, 0) + 1
    found = _owners_many(tenant_id, set(mentions))

    new: list[int] = []
    matched: dict[int, int] = {}  # item → customer
    for index, keys in enumerate(stated):
        owners = {found[s.key][1] for s in keys if s.key in found}
        shared = any(mentions[s.key] > 1 for s in keys)
        if shared or len(owners) > 1 or (actor is not None and not owners):
            # An actor's new customer takes their scope defaults: the careful path handles it.
            slow.append(index)
        elif owners:
            matched[index] = owners.pop()
        else:
            new.append(index)

    locked = lock_customers(set(matched.values())) if matched else {}
    for index, customer_id in list(matched.items()):
        customer = locked.get(customer_id)
        if customer is None or customer.merged_into_id is not None:
            del matched[index]
            slow.append(index)
    if actor is not None and matched:
        editable = set(
            Customer.objects.visible_to(actor, EDIT)
            .filter(pk__in=set(matched.values()))
            .values_list("pk", flat=True)
        )
        for index, customer_id in list(matched.items()):
            if customer_id not in editable:
                del matched[index]
                slow.append(index)  # answers customer_exists_elsewhere there, as one by one
    slow.sort()

    created = Customer.objects.bulk_create(
        [_unsaved(tenant_id, profiles[index], now) for index in new], batch_size=500
    )
    OwnershipChange.objects.bulk_create(
        [
            OwnershipChange(
                tenant_id=tenant_id,
                customer=c,
                kind=OwnershipChangeKind.ASSIGN,
                to_owner_id=c.owner_id,
                at=now,
            )
            for c in created
            if c.owner_id
        ],
        batch_size=500,
    )
    customers = dict(zip(new, created, strict=True))
    customers.update({index: locked[cid] for index, cid in matched.items()})

    attach: list[tuple[int, Identity]] = []
    seen_ids: list[int] = []
    verified_ids: list[int] = []
    for index, customer in customers.items():
        for s in stated[index]:
            if s.key in found:
                seen_ids.append(found[s.key][0])
                if s.verified:
                    verified_ids.append(found[s.key][0])
            else:
                attach.append(
                    (
                        index,
                        Identity(
                            tenant_id=tenant_id,
                            customer=customer,
                            kind=s.key.kind,
                            namespace=s.key.namespace,
                            value=s.key.value,
                            verified=s.verified,
                            source=(s.source or source)[:50],
                            first_seen_at=now,
                            last_seen_at=now,
                        ),
                    )
                )
    Identity.objects.bulk_create([row for _, row in attach], batch_size=500)
    for start in range(0, len(seen_ids), 1000):
        Identity.objects.filter(pk__in=seen_ids[start : start + 1000]).update(last_seen_at=now)
    if verified_ids:
        Identity.objects.filter(pk__in=verified_ids).update(verified=True)

    attached: dict[int, list[Identity]] = {}
    for index, row in attach:
        attached.setdefault(index, []).append(row)
    fresh = set(new)
    for index, customer in customers.items():
        result = Resolution(customer=customer, outcome="created" if index in fresh else "matched")
        result.attached = attached.get(index, [])
        if index in matched:
            result.filled = _fill_blanks(customer, profiles[index])
        results[index] = result
    _propose_for_new(tenant_id, [customers[i] for i in new])
    if customers:
        audit_record(
            actor=actor,
            tenant_id=tenant_id,
            action="customers.customer.batch_resolved",
            subject=None,
            data={
                "created": [c.pk for c in created],
                "matched": sorted({c.pk for i, c in customers.items() if i in matched}),
                "identities_attached": len(attach),
                "source": source,
            },
        )


def _unsaved(tenant_id: int, data: dict[str, Any], now: datetime) -> Customer:
    fields = {k: data[k] for k in PROFILE_FIELDS if k in data and k != "name"}
    name = str(data.get("name") or "").strip() or "未命名客户"
    customer = Customer(tenant_id=tenant_id, name=name, **fields)
    customer.owned_since = now if customer.owner_id else None
    customer.company_key = company_key(customer.kind, customer.name, customer.company_name)
    return customer


def _propose_for_new(tenant_id: int, created: list[Customer]) -> None:
    """Look-alikes for new customers, asking only for those that have a namesake (or company
    namesake) at all: one query tells which."""
    if not created:
        return
    names = {c.name for c in created if c.kind == CustomerKind.PERSON}
    companies = {c.company_key for c in created if c.company_key}
    others = Customer.objects.filter(tenant_id=tenant_id, merged_into__isnull=True).exclude(
        pk__in=[c.pk for c in created]
    )
    with_namesake = set(others.filter(name__in=names).values_list("name", flat=True))
    with_company = set(
        others.filter(company_key__in=companies).values_list("company_key", flat=True)
    )
    # Two new customers of one batch may be namesakes of each other, too.
    seen_names: set[str] = set()
    for c in created:
        if c.kind == CustomerKind.PERSON and c.name in seen_names:
            with_namesake.add(c.name)
        seen_names.add(c.name)
    for c in created:
        if c.name in with_namesake or (c.company_key and c.company_key in with_company):
            propose_lookalikes(c)
