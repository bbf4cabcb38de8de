"""Region pools (公海): which pool a customer is in, claiming from it, releasing into it, and the
daily return of customers nobody followed up.

A pool belongs to a region. A customer is in the pool of its region, or else of the nearest
region above it that has one; a customer with no owner is in the pool ("unclaimed"). A disabled
pool still holds its customers, but nobody can claim from it and nothing returns to it by itself.

Who may claim (customer.edit): anyone whose data scope covers the customer, and anyone whose own
region lies within the pool's region (the pool is their team's: a 上海 agent with "self" scope
claims from the 上海 pool, or from the 华东 pool when 上海 has none of its own).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import GreaterThanOrEqual, LessThan
from django.utils import timezone

from jingwei.audit.services import audit_record, snapshot
from jingwei.core.errors import Conflict, Forbidden, Invalid, NotFound
from jingwei.notify.models import Severity
from jingwei.notify.services import notification_send
from jingwei.org.models import Employee, Region, path_ids
from jingwei.org.scope import Q_NONE, Actor
from jingwei.org.services import check_refs

from ..models import Customer, CustomerPool, OwnershipChange, OwnershipChangeKind
from .common import ASSIGN, EDIT, MANAGE, VIEW, customer_locked, lock_customers, record, survivor_id
from .ownership import (
    local_day,
    owner_change_record,
    reminders_cancel,
    time_zone_of,
    with_phones,
)

POOL_FIELDS = (
    "region_id",
    "name",
    "claim_limit",
    "daily_claim_limit",
    "return_after_days",
    "enabled",
)


RETURN_CHUNK = 1000  # customers returned per transaction: short locks on a large tenant


# --- which pool --------------------------------------------------------------------------------


def _ancestor_paths(path: str) -> list[str]:
    """ "/1/5/12/" → ["/1/", "/1/5/", "/1/5/12/"]: the region and every region above it."""
    ids = path_ids(path)
    return ["/" + "/".join(str(i) for i in ids[: n + 1]) + "/" for n in range(len(ids))]


def region_pools(tenant_id: int) -> dict[int, int]:
    """Region id → id of the pool its customers are in (its own, or the nearest above it).
    Regions and pools are few per tenant: two small queries, the rest in Python."""
    pools = dict(CustomerPool.objects.filter(tenant_id=tenant_id).values_list("region_id", "pk"))
    if not pools:
        return {}
    out: dict[int, int] = {}
    for region_id, path in Region.objects.filter(tenant_id=tenant_id).values_list("pk", "path"):
        for ancestor in reversed(path_ids(path)):
            if ancestor in pools:
                out[region_id] = pools[ancestor]
                break
    return out


def pool_region_ids(pool: CustomerPool) -> list[int]:
    """The regions whose customers are in `pool` (its region's subtree minus sub-pools')."""
    return sorted(r for r, p in region_pools(pool.tenant_id).items() if p == pool.pk)


def pool_of(tenant_id: int, region_id: int | None) -> CustomerPool | None:
    """The pool customers of `region_id` are in, if any."""
    if region_id is None:
        return None
    path = Region.objects.filter(tenant_id=tenant_id, pk=region_id).values_list("path", flat=True)
    first = path.first()
    if first is None:
        return None
    pools = CustomerPool.objects.filter(
        tenant_id=tenant_id, region_id__in=path_ids(first)
    ).select_related("region")
    return max(pools, key=lambda p: len(p.region.path), default=None)


def _own_region_path(actor: Actor) -> str | None:
    return (
        Employee.objects.filter(tenant_id=actor.tenant_id, pk=actor.employee_id)
        .values_list("region__path", flat=True)
        .first()
    )


def _reach_q(actor: Actor, perm: str, *, own_region: bool) -> Q:
    """Pools reached by the actor's grants of `perm`: all with a company-wide grant; those in a
    region grant's subtree; with `own_region`, also the pools of the actor's own region and of
    the regions above it."""
    grants = actor.grants_of(perm)
    if not grants:
        return Q_NONE
    if any(g.scope == "tenant" for g in grants):
        return Q()
    q = Q_NONE
    for g in grants:
        if g.scope == "region" and g.region_path:
            q |= Q(region__path__startswith=g.region_path)
    path = _own_region_path(actor) if own_region else None
    if path:
        q |= Q(region__path__in=_ancestor_paths(path))
    return q


def pools_reachable(actor: Actor, perm: str) -> QuerySet[CustomerPool]:
    """The pools whose customers the actor may see (VIEW) or claim (EDIT)."""
    return CustomerPool.objects.filter(tenant_id=actor.tenant_id).filter(
        _reach_q(actor, perm, own_region=True)
    )


def pools_manageable(actor: Actor) -> QuerySet[CustomerPool]:
    """The pools the actor may change: customer.manage for the whole company, or for a region
    the pool's region lies in (a regional manager manages the pools of their regions)."""
    return CustomerPool.objects.filter(tenant_id=actor.tenant_id).filter(
        _reach_q(actor, MANAGE, own_region=False)
    )


def _visible_pools(actor: Actor) -> QuerySet[CustomerPool]:
    return CustomerPool.objects.filter(tenant_id=actor.tenant_id).filter(
        _reach_q(actor, VIEW, own_region=True) | _reach_q(actor, MANAGE, own_region=False)
    )


# --- pool settings -----------------------------------------------------------------------------


def _ensure_region_manageable(actor: Actor, region_id: int) -> Region:
    region = Region.objects.get(tenant_id=actor.tenant_id, pk=region_id)  # checked by check_refs
    for g in actor.grants_of(MANAGE):
        if g.scope == "tenant" or (
            g.scope == "region" and g.region_path and region.path.startswith(g.region_path)
        ):
            return region
    raise Forbidden(
        "只能管理您负责区域（及其下级区域）的公海", code="out_of_scope", field="region_id"
    )


def _audit_pool(actor: Actor | None, action: str, pool: CustomerPool, **fields: Any) -> None:
    # Filed under the pool's region, with the pool's id in the data: audit_record places an
    # event by its subject's scope fields, and for a subject declaring a region but no
    # department (a pool) it currently files the subject's own id as the department.
    data = {"pool_id": pool.pk, **fields.pop("data", {})}
    audit_record(
        actor=actor,
        tenant_id=pool.tenant_id,
        action=action,
        subject=pool.region,
        data=data,
        **fields,
    )


def _check_limits(values: Mapping[str, Any]) -> None:
    for name in POOL_FIELDS:
        if name in values and values[name] is None:
            raise Invalid(f"{name} 不能为空", code="required", field=name)


def _save_pool(pool: CustomerPool, fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            pool.save(update_fields=fields)
    except IntegrityError:
        raise Conflict(
            "该区域已有公海（每个区域只能有一个）", code="pool_exists", field="region_id"
        ) from None


def pool_create(
    *,
    actor: Actor,
    region_id: int,
    name: str = "",
    claim_limit: int = 50,
    daily_claim_limit: int = 20,
    return_after_days: int = 30,
    enabled: bool = True,
) -> CustomerPool:
    """Open a pool for a region (one per region). Without a name it is called 「<区域>公海」.
    Limits of 0 mean no limit; `return_after_days` 0 means customers never return by themselves."""
    actor.require(MANAGE)
    with transaction.atomic(durable=True):
        check_refs(actor.tenant_id, {"region_id": region_id})
        region = _ensure_region_manageable(actor, region_id)
        pool = CustomerPool(
            tenant_id=actor.tenant_id,
            region=region,
            name=name or f"{region.name}公海",
            claim_limit=claim_limit,
            daily_claim_limit=daily_claim_limit,
            return_after_days=return_after_days,
            enabled=enabled,
        )
        _save_pool(pool)
        _audit_pool(actor, "customers.pool.created", pool, after=snapshot(pool, POOL_FIELDS))
        return pool


def _pool_for_manage(actor: Actor, pool_id: int) -> CustomerPool:
    actor.require(MANAGE)
    pool = pools_manageable(actor).select_for_update().filter(pk=pool_id).first()
    if pool is None:
        raise NotFound("公海不存在", field="pool_id")
    return pool


def pool_update(*, actor: Actor, pool_id: int, changes: Mapping[str, Any]) -> CustomerPool:
    """Change a pool's name, limits, region or whether it is enabled (customer.manage over the
    pool's region, and over the new region when it moves)."""
    changes = dict(changes)
    unknown = set(changes) - set(POOL_FIELDS)
    if unknown:
        raise Invalid("不认识的字段", code="unknown_field", field=sorted(unknown)[0])
    _check_limits(changes)
    with transaction.atomic(durable=True):
        pool = _pool_for_manage(actor, pool_id)
        if "region_id" in changes:
            check_refs(actor.tenant_id, {"region_id": changes["region_id"]})
            _ensure_region_manageable(actor, changes["region_id"])
        before = snapshot(pool, POOL_FIELDS)
        for name, value in changes.items():
            setattr(pool, name, value)
        _save_pool(pool, [*changes, "updated_at"])
        after = snapshot(pool, POOL_FIELDS)
        diff = {k: v for k, v in after.items() if before[k] != v}
        if diff:
            _audit_pool(
                actor,
                "customers.pool.updated",
                pool,
                before={k: before[k] for k in diff},
                after=diff,
            )
        return pool


def pool_delete(*, actor: Actor, pool_id: int) -> None:
    """Close a pool. Its unclaimed customers stay unowned and fall to the pool of a region above,
    if there is one."""
    with transaction.atomic(durable=True):
        pool = _pool_for_manage(actor, pool_id)
        _audit_pool(actor, "customers.pool.deleted", pool, before=snapshot(pool, POOL_FIELDS))
        pool.delete()


# --- reads -------------------------------------------------------------------------------------


def pool_list(actor: Actor) -> list[CustomerPool]:
    """The pools the actor may see or manage, by region, each with `unclaimed_count`."""
    pools = list(_visible_pools(actor).select_related("region").order_by("region__path", "id"))
    if not pools:
        return pools
    mapping = region_pools(actor.tenant_id)
    counts: Counter[int] = Counter()
    unclaimed = (
        Customer.objects.filter(
            tenant_id=actor.tenant_id,
            owner__isnull=True,
            merged_into__isnull=True,
            region_id__in=list(mapping),
        )
        .values("region_id")
        .annotate(n=Count("pk"))
    )
    for row in unclaimed:
        counts[mapping[row["region_id"]]] += row["n"]
    for pool in pools:
        pool.unclaimed_count = counts[pool.pk]  # type: ignore[attr-defined]
    return pools


def pool_get(actor: Actor, pool_id: int) -> CustomerPool:
    pools = [p for p in pool_list(actor) if p.pk == pool_id]
    if not pools:
        raise NotFound("公海不存在", field="pool_id")
    return pools[0]


def pool_customers(actor: Actor, pool_id: int, *, q: str | None = None) -> QuerySet[Customer]:
    """The unclaimed customers of a pool the actor may reach, most recently released first."""
    actor.require(VIEW)
    pool = pools_reachable(actor, VIEW).filter(pk=pool_id).first()
    if pool is None:
        raise NotFound("公海不存在", field="pool_id")
    qs = Customer.objects.filter(
        tenant_id=actor.tenant_id,
        owner__isnull=True,
        merged_into__isnull=True,
        region_id__in=pool_region_ids(pool),
    )
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(company_name__icontains=q))
    return with_phones(qs.order_by("-updated_at", "-id"))


# --- claim and release -------------------------------------------------------------------------


def _limit_checks(actor: Actor, pool: CustomerPool, now: datetime) -> None:
    """Refuse a claim past the pool's limits (0 = no limit). The caller holds the claimer's
    row lock, so two claims by one person cannot both pass on the same count."""
    regions = pool_region_ids(pool)
    if pool.claim_limit:
        owned = Customer.objects.filter(
            tenant_id=actor.tenant_id,
            owner_id=actor.employee_id,
            merged_into__isnull=True,
            region_id__in=regions,
        ).count()
        if owned >= pool.claim_limit:
            raise Conflict(
                f"已达到「{pool.name}」的领取上限：每人最多同时负责该公海 {pool.claim_limit} 位"
                f"客户（您现在负责 {owned} 位）",
                code="claim_limit_reached",
                field="claim_limit",
            )
    if pool.daily_claim_limit:
        start, _ = local_day(now, time_zone_of(actor.tenant_id, pool.region.timezone))
        today = OwnershipChange.objects.filter(
            tenant_id=actor.tenant_id,
            kind=OwnershipChangeKind.CLAIM,
            to_owner_id=actor.employee_id,
            at__gte=start,
            customer__region_id__in=regions,
        ).count()
        if today >= pool.daily_claim_limit:
            raise Conflict(
                f"已达到「{pool.name}」的每日领取上限：每人每天最多领取 "
                f"{pool.daily_claim_limit} 位（您今天已领取 {today} 位）",
                code="daily_claim_limit_reached",
                field="daily_claim_limit",
            )


def customer_claim(*, actor: Actor, customer_id: int, now: datetime | None = None) -> Customer:
    """Take an unclaimed customer from its pool (领取). Two people claiming one customer at once:
    the customer row lock orders them, and the second finds it owned (409 `already_owned`)."""
    actor.require(EDIT)
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        target = survivor_id(actor.tenant_id, customer_id)
        customer = lock_customers([target]).get(target) if target is not None else None
        if customer is None:
            raise NotFound("客户不存在", field="customer_id")
        pool = pool_of(actor.tenant_id, customer.region_id)
        in_scope = Customer.objects.visible_to(actor, EDIT).filter(pk=customer.pk).exists()
        if not in_scope and not (
            pool is not None and pools_reachable(actor, EDIT).filter(pk=pool.pk).exists()
        ):
            raise NotFound("客户不存在", field="customer_id")
        if customer.merged_into_id is not None:
            raise Conflict(
                "客户刚被合并，请刷新后重试", code="customer_merged", field="customer_id"
            )
        if target != customer_id:
            # only now: the actor may reach the customer, so naming it leaks nothing
            raise Conflict(
                f"该客户已合并到客户 {target}，请在合并后的客户上操作",
                code="customer_merged",
                field="customer_id",
            )
        if customer.owner_id == actor.employee_id:
            raise Conflict("您已是该客户的负责人", code="already_owned", field="customer_id")
        if customer.owner_id is not None:
            raise Conflict(
                "该客户已有负责人，不在公海中", code="already_owned", field="customer_id"
            )
        if pool is None:
            raise Conflict(
                "该客户所在区域没有公海，不能领取", code="not_in_pool", field="customer_id"
            )
        if not pool.enabled:
            raise Conflict(
                f"「{pool.name}」已停用，暂不能领取", code="pool_disabled", field="customer_id"
            )
        Employee.objects.select_for_update().filter(pk=actor.employee_id).first()
        _limit_checks(actor, pool, now)
        customer.owner_id = actor.employee_id
        customer.owned_since = now
        customer.save(update_fields=["owner", "owned_since", "updated_at"])
        owner_change_record(customer, None, actor=actor, kind=OwnershipChangeKind.CLAIM)
        record(actor, "customers.customer.claimed", customer, data={"pool_id": pool.pk})
        return customer


def customer_release(*, actor: Actor, customer_id: int, reason: str) -> Customer:
    """Put a customer back into its pool (放回公海): by its owner, or by someone holding
    customer.assign over it. Its follow-up plan and reminder go with the old owner."""
    if not (actor.has_perm(ASSIGN) or actor.has_perm(EDIT)):
        actor.require(EDIT)
    reason = reason.strip()
    if not reason:
        raise Invalid("请填写放回公海的原因", code="required", field="reason")
    reach = Customer.objects.visible_to(actor, EDIT).filter(
        owner_id=actor.employee_id
    ) | Customer.objects.visible_to(actor, ASSIGN)
    with transaction.atomic(durable=True):
        try:
            customer = customer_locked(actor, customer_id, reach)
        except NotFound:
            if Customer.objects.visible_to(actor, VIEW).filter(pk=customer_id).exists():
                raise Forbidden(
                    "只有负责人或有分配权限（customer.assign）的人可以把客户放回公海",
                    code="permission_denied",
                ) from None
            raise
        if customer.owner_id is None:
            raise Conflict("该客户已在公海中", code="not_owned", field="customer_id")
        pool = pool_of(actor.tenant_id, customer.region_id)
        if pool is None:
            raise Conflict(
                "该客户所在区域没有公海，不能放回；请改为分配给同事",
                code="not_in_pool",
                field="customer_id",
            )
        previous = customer.owner_id
        customer.owner_id = None
        customer.owned_since = None
        customer.next_follow_up_at = None
        customer.save(update_fields=["owner", "owned_since", "next_follow_up_at", "updated_at"])
        owner_change_record(
            customer, previous, actor=actor, kind=OwnershipChangeKind.RELEASE, reason=reason
        )
        reminders_cancel(actor.tenant_id, [customer.pk])
        record(
            actor,
            "customers.customer.released",
            customer,
            before={"owner_id": previous},
            after={"owner_id": None},
            data={"pool_id": pool.pk, "reason": reason},
        )
        if previous != actor.employee_id:
            notification_send(
                tenant_id=actor.tenant_id,
                recipient_ids=[previous],
                kind="customers.released",
                title=f"您负责的客户「{customer.name}」已被 {actor.name} 放回{pool.name}",
                body=reason,
                data={"customer_id": customer.pk, "pool_id": pool.pk},
            )
        return customer


# --- automatic return --------------------------------------------------------------------------


def _idle_since() -> Greatest:
    """When the owner last did something with the customer: the later of getting it and the
    last follow-up (a customer just claimed is not stale for its old follow-ups). Customers
    owned before ownership was recorded count from their registration."""
    owned = Coalesce("owned_since", "created_at")
    return Greatest(owned, Coalesce("last_followed_at", "owned_since", "created_at"))


def _owned_in(tenant_id: int, regions: list[int]) -> QuerySet[Customer]:
    return Customer.objects.filter(
        tenant_id=tenant_id,
        owner__isnull=False,
        merged_into__isnull=True,
        region_id__in=regions,
    )


def _pools_with_return(tenant_id: int) -> list[tuple[CustomerPool, list[int]]]:
    mapping = region_pools(tenant_id)
    regions: dict[int, list[int]] = defaultdict(list)
    for region_id, pool_id in mapping.items():
        regions[pool_id].append(region_id)
    pools = CustomerPool.objects.filter(
        tenant_id=tenant_id, enabled=True, return_after_days__gt=0
    ).order_by("id")
    return [(p, sorted(regions[p.pk])) for p in pools if regions[p.pk]]


def _return_chunk(
    pool: CustomerPool, regions: list[int], cutoff: datetime, now: datetime
) -> dict[int, int]:
    """Return up to RETURN_CHUNK stale customers of `pool` in one transaction; {owner: count}."""
    with transaction.atomic(durable=True):
        stale = (
            _owned_in(pool.tenant_id, regions)
            .filter(LessThan(_idle_since(), cutoff))
            .order_by("pk")
        )
        if connection.features.has_select_for_update_skip_locked:
            # A customer being edited right now is left for tomorrow rather than waited for.
            stale = stale.select_for_update(skip_locked=True)
        rows = list(stale.values_list("pk", "owner_id")[:RETURN_CHUNK])
        if not rows:
            return {}
        ids = [pk for pk, _ in rows]
        Customer.objects.filter(pk__in=ids, owner__isnull=False).update(
            owner=None, owned_since=None, next_follow_up_at=None, updated_at=now
        )
        reason = f"超过 {pool.return_after_days} 天未跟进，自动退回{pool.name}"
        OwnershipChange.objects.bulk_create(
            OwnershipChange(
                tenant_id=pool.tenant_id,
                customer_id=pk,
                kind=OwnershipChangeKind.AUTO_RETURN,
                from_owner_id=owner,
                to_owner_id=None,
                reason=reason,
                at=now,
            )
            for pk, owner in rows
        )
        reminders_cancel(pool.tenant_id, ids)
        _audit_pool(
            None,
            "customers.pool.auto_returned",
            pool,
            data={"count": len(ids), "customer_ids": ids, "reason": reason},
        )
        return dict(Counter(owner for _, owner in rows))


def _notify_by_count(
    tenant_id: int, counts: Mapping[int, int], *, kind: str, title: str, body: str, severity: str
) -> None:
    """One notification per owner, sent in one insert per distinct count."""
    by_count: dict[int, list[int]] = defaultdict(list)
    for owner, n in counts.items():
        by_count[n].append(owner)
    for n, owners in sorted(by_count.items()):
        notification_send(
            tenant_id=tenant_id,
            recipient_ids=owners,
            kind=kind,
            title=title.format(n=n),
            body=body.format(n=n),
            severity=severity,
            data={"count": n},
        )


def pools_return_stale(*, tenant_id: int, now: datetime | None = None) -> int:
    """Return to their pool the owned customers nobody followed up for the pool's
    `return_after_days` (enabled pools with a period only). Works in chunks of RETURN_CHUNK, each
    its own transaction with its OwnershipChange rows and audit event; afterwards each former
    owner gets one notification with their count. Returns how many customers went back."""
    now = now or timezone.now()
    returned: Counter[int] = Counter()
    for pool, regions in _pools_with_return(tenant_id):
        cutoff = now - timedelta(days=pool.return_after_days)
        while True:
            chunk = _return_chunk(pool, regions, cutoff, now)
            returned.update(chunk)
            if sum(chunk.values()) < RETURN_CHUNK:
                break
    if returned:
        with transaction.atomic(durable=True):
            _notify_by_count(
                tenant_id,
                returned,
                kind="customers.pool.auto_returned",
                title="{n} 位客户因长期未跟进已退回公海",
                body="这些客户超过公海规定的天数没有跟进记录，已自动退回公海，其他同事可以领取。",
                severity=Severity.WARNING,
            )
    return sum(returned.values())


def pools_warn_stale(*, tenant_id: int, now: datetime | None = None, days_before: int = 3) -> int:
    """Warn owners of customers that will return to the pool in `days_before` days unless
    followed up: those whose idle time crosses that mark within the coming day, so that a daily
    run warns about each customer once. One notification per owner; returns how many owners."""
    now = now or timezone.now()
    counts: Counter[int] = Counter()
    for pool, regions in _pools_with_return(tenant_id):
        if pool.return_after_days <= days_before:
            continue
        mark = now - timedelta(days=pool.return_after_days - days_before)
        rows = (
            _owned_in(tenant_id, regions)
            .filter(
                LessThan(_idle_since(), mark),
                GreaterThanOrEqual(_idle_since(), mark - timedelta(days=1)),
            )
            .values("owner_id")
            .annotate(n=Count("pk"))
        )
        for row in rows:
            counts[row["owner_id"]] += row["n"]
    if counts:
        with transaction.atomic(durable=True):
            _notify_by_count(
                tenant_id,
                counts,
                kind="customers.pool.return_warning",
                title=f"{{n}} 位客户将在 {days_before} 天后退回公海",
                body="这些客户很久没有跟进了；如不希望被退回，请尽快跟进并记录。",
                severity=Severity.INFO,
            )
    return len(counts)
