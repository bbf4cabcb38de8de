"""The customer score: the sum of the points of the enabled score signals a customer matches.

Signals are conditions in the customers.conditions language with points (negative points lower
the score). `Customer.score` holds the score as of `scored_at`, written by the batch
(`scores_recompute`), which is set-based: one UPDATE whose new score is a sum of
CASE WHEN <signal matches> THEN points ELSE 0 END, one term per signal, so 500,000 customers are
scored by the database in one statement, not by a loop in Python. A customer's breakdown
(`customer_score`) is computed live, in one query, with each signal's match.

Signals are one definition for the whole company: writing them (and running the batch) takes
customer.manage for the whole company; anyone who sees customers reads them.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.expressions import Combinable
from django.utils import timezone

from jingwei.audit.services import audit_record, changed
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from .. import conditions, selectors
from ..models import Customer, ScoreSignal
from .common import MANAGE, VIEW
from .segments import describe_conditions

POINTS_MAX = 1000
SIGNAL_FIELDS = ("name", "conditions", "points", "enabled", "sort")


def _snapshot(signal: ScoreSignal) -> dict[str, Any]:
    return {name: getattr(signal, name) for name in SIGNAL_FIELDS}


def _name_taken() -> Conflict:
    return Conflict("已有同名的评分项，请换一个名称", code="score_signal_name_taken", field="name")


def _clean(changes: dict[str, Any], tenant_id: int) -> dict[str, Any]:
    if "name" in changes:
        changes["name"] = (changes["name"] or "").strip()
        if not changes["name"]:
            raise Invalid("名称不能为空", code="required", field="name")
    if "points" in changes and not -POINTS_MAX <= changes["points"] <= POINTS_MAX:
        raise Invalid(f"分值应在 -{POINTS_MAX} 到 {POINTS_MAX} 之间", field="points")
    if "conditions" in changes:
        conditions.check(changes["conditions"], tenant_id)
        circular = _score_mentioned(changes["conditions"], "conditions")
        if circular:
            # The score is what signals make: a signal on it would depend on the last run.
            raise Invalid("评分项的条件不能引用评分本身", code="invalid_condition", field=circular)
    return changes


def _score_mentioned(data: Any, path: str) -> str | None:
    """The path of the first leaf testing the score in (checked) conditions, if any."""
    for group in ("all", "any"):
        if group in data:
            for i, item in enumerate(data[group]):
                found = _score_mentioned(item, f"{path}.{group}.{i}")
                if found:
                    return found
            return None
    if "not" in data:
        return _score_mentioned(data["not"], f"{path}.not")
    return f"{path}.field" if data.get("field") == "score" else None


def score_signal_list(*, actor: Actor) -> QuerySet[ScoreSignal]:
    actor.require(VIEW)
    return ScoreSignal.objects.filter(tenant_id=actor.tenant_id)


def _signal_for_update(actor: Actor, signal_id: int) -> ScoreSignal:
    signal = (
        ScoreSignal.objects.select_for_update()
        .filter(tenant_id=actor.tenant_id, pk=signal_id)
        .first()
    )
    if signal is None:
        raise NotFound("评分项不存在", field="signal_id")
    return signal


def score_signal_create(
    *,
    actor: Actor,
    name: str,
    conditions_data: Any,
    points: int,
    enabled: bool = True,
    sort: int = 0,
) -> ScoreSignal:
    """A new signal. Stored scores change at the next recompute; the breakdown at once."""
    actor.require_tenant_wide(MANAGE)
    fields = _clean(
        {"name": name, "conditions": conditions_data, "points": points}, actor.tenant_id
    )
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                signal = ScoreSignal.objects.create(
                    tenant_id=actor.tenant_id, enabled=enabled, sort=sort, **fields
                )
        except IntegrityError:
            raise _name_taken() from None
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.score_signal.created",
            subject=signal,
            after=_snapshot(signal),
        )
        return signal


def score_signal_update(*, actor: Actor, signal_id: int, changes: dict[str, Any]) -> ScoreSignal:
    """`changes` holds any of name, conditions, points, enabled, sort."""
    actor.require_tenant_wide(MANAGE)
    changes = _clean(dict(changes), actor.tenant_id)
    with transaction.atomic(durable=True):
        signal = _signal_for_update(actor, signal_id)
        before = _snapshot(signal)
        for key in SIGNAL_FIELDS:
            if key in changes:
                setattr(signal, key, changes[key])
        try:
            with transaction.atomic():
                signal.save()
        except IntegrityError:
            raise _name_taken() from None
        diff = changed(before, _snapshot(signal))
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.score_signal.updated",
            subject=signal,
            before={k: before[k] for k in diff},
            after=diff,
        )
        return signal


def score_signal_delete(*, actor: Actor, signal_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        signal = _signal_for_update(actor, signal_id)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.score_signal.deleted",
            subject=signal,
            before=_snapshot(signal),
        )
        signal.delete()


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    signal: ScoreSignal
    node: conditions.Node | None  # None: its conditions no longer check (a tag was deleted …)
    problem: str


def _terms(tenant_id: int) -> list[_Term]:
    """The enabled signals, in their order, with their parsed conditions. A signal whose stored
    conditions no longer check counts as matching nobody (and its breakdown says why)."""
    terms = []
    for signal in ScoreSignal.objects.filter(tenant_id=tenant_id, enabled=True):
        try:
            terms.append(_Term(signal, conditions.check(signal.conditions, tenant_id), ""))
        except Invalid as problem:
            terms.append(_Term(signal, None, f"条件已失效：{problem.message}"))
    return terms


def _score_expression(terms: list[_Term], tenant_id: int, now: datetime) -> Combinable:
    parts: list[Combinable] = [
        Case(
            When(conditions.to_q(t.node, tenant_id, now), then=Value(t.signal.points)),
            default=Value(0),
            output_field=IntegerField(),
        )
        for t in terms
        if t.node is not None and t.signal.points
    ]
    if not parts:
        return Value(0, output_field=IntegerField())
    return functools.reduce(operator.add, parts)


def scores_refresh_in_transaction(
    *, tenant_id: int, customer_ids: Collection[int] | None = None, now: datetime | None = None
) -> int:
    """Bring the score of the tenant's active customers (or only of `customer_ids`) up to date as
    of `now`, in the caller's transaction, as one UPDATE. Only rows whose score changes (or that
    were never scored) are written, stamped `scored_at` = now: rewriting all 500,000 rows and
    their indexes would take most of the time, while from one run to the next few scores move.
    Returns how many customers' scores were written."""
    now = now or timezone.now()
    terms = _terms(tenant_id)
    customers = Customer.objects.filter(tenant_id=tenant_id, merged_into__isnull=True)
    if customer_ids is not None:
        customers = customers.filter(pk__in=list(customer_ids))
    stale = ~Q(score=_score_expression(terms, tenant_id, now)) | Q(scored_at__isnull=True)
    return customers.filter(stale).update(
        score=_score_expression(terms, tenant_id, now), scored_at=now
    )


def scores_recompute(*, tenant_id: int) -> int:
    """Score every active customer of the tenant (the batch; also after signals change)."""
    with transaction.atomic(durable=True):
        return scores_refresh_in_transaction(tenant_id=tenant_id)


def scores_recompute_requested(*, actor: Actor) -> int:
    """The batch, run by a person now: recorded in the audit log with how many it scored."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        scored = scores_refresh_in_transaction(tenant_id=actor.tenant_id)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.scores.recomputed",
            data={
                "customers": scored,
                "signals": ScoreSignal.objects.filter(
                    tenant_id=actor.tenant_id, enabled=True
                ).count(),
            },
        )
        return scored


@dataclass(frozen=True)
class SignalMatch:
    signal: ScoreSignal
    matched: bool
    description: str
    problem: str


@dataclass(frozen=True)
class ScoreBreakdown:
    customer: Customer
    total: int  # live: the enabled signals matched now
    items: list[SignalMatch]

    @property
    def stored_score(self) -> int:
        return self.customer.score

    @property
    def scored_at(self) -> datetime | None:
        return self.customer.scored_at


def customer_score(
    *, actor: Actor, customer_id: int, now: datetime | None = None
) -> ScoreBreakdown:
    """The customer's score now, signal by signal (one query for all the signals). A merged
    customer's id reads as the customer it lives in now; out of scope answers 404."""
    customer = selectors.customer_read(actor, customer_id)
    now = now or timezone.now()
    terms = _terms(actor.tenant_id)
    checks = {
        f"signal_{i}": Case(
            When(conditions.to_q(t.node, actor.tenant_id, now), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
        for i, t in enumerate(terms)
        if t.node is not None
    }
    matched = Customer.objects.filter(pk=customer.pk).values(**checks).get() if checks else {}
    names = describe_conditions([t.node for t in terms], actor.tenant_id)
    items = [
        SignalMatch(t.signal, bool(matched.get(f"signal_{i}", False)), names[i], t.problem)
        for i, t in enumerate(terms)
    ]
    return ScoreBreakdown(
        customer=customer,
        total=sum(item.signal.points for item in items if item.matched),
        items=items,
    )
