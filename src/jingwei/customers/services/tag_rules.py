"""Auto-tag rules: customers matching a rule's conditions (the language of customers.conditions)
get its tag.

A rule only removes the tags it set itself (`CustomerTag.rule`), and only with
`remove_unmatched`; a tag a person set (or an import or an integration) is never touched. In a
single-choice group a rule's tag replaces only another rule's (a person's choice wins, and the rule
then leaves that customer alone); when several rules of the group match a customer, the first of
them (lowest id) gets its tag, so the tag does not flip back and forth between runs.

Rules run in id order, for one customer when one of its events arrives
(`rules_apply_to_customer`) and for everyone by the batch (`rules_run_all`, `rule_run`); both give
the same tags for the same events and the same moment, so the batch can be rerun at any time.
The batch is set-based: the matching ids come from one query, the differences are computed in
memory and written in chunks, so 500,000 customers take seconds, not a loop of queries.

Tag changes go on the customer's timeline; on the audit log per customer when one customer is
evaluated, and as one event with the counts per rule run (not 500,000 events).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record, changed, snapshot
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from .. import conditions
from ..identities import IdentityKind
from ..models import (
    Customer,
    CustomerTag,
    Identity,
    IdentityStatus,
    Tag,
    TagChoice,
    TagRule,
    TagSource,
)
from .common import VIEW, lock_customers, record, survivor_id
from .tagging import (
    MANAGE,
    WRITE_CHUNK,
    TagDiff,
    clean_name,
    name_taken,
    tag_change_data,
    tag_change_event,
    tag_for_update,
)
from .timeline import events_record_many

PREVIEW_SIZE = 20
TIMELINE_MAX_CHANGES = 10_000  # tag changes of one batch run written to the timelines


def _audit(actor: Actor | None, tenant_id: int, action: str, subject: Any, **extra: Any) -> None:
    audit_record(actor=actor, tenant_id=tenant_id, action=action, subject=subject, **extra)


# --- definitions -----------------------------------------------------------------------------


def _rule_for_update(actor: Actor, rule_id: int) -> TagRule:
    rule = (
        TagRule.objects.select_for_update()
        .select_related("tag__group")
        .filter(tenant_id=actor.tenant_id, pk=rule_id)
        .first()
    )
    if rule is None:
        raise NotFound("自动标签规则不存在", field="rule_id")
    return rule


def tag_rules_list(*, actor: Actor) -> QuerySet[TagRule]:
    actor.require(MANAGE)
    return TagRule.objects.filter(tenant_id=actor.tenant_id).select_related("tag__group")


def tag_rule_get(*, actor: Actor, rule_id: int) -> TagRule:
    rule = tag_rules_list(actor=actor).filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("自动标签规则不存在", field="rule_id")
    return rule


def _tests_own_tag(node: conditions.Node, tag_id: int) -> bool:
    if isinstance(node, conditions.Group):
        return any(_tests_own_tag(item, tag_id) for item in node.items)
    return isinstance(node, conditions.TagLeaf) and node.tag_id == tag_id


def _checked(tenant_id: int, data: Any, tag_id: int) -> conditions.Node:
    node = conditions.check(data, tenant_id)
    if _tests_own_tag(node, tag_id):
        # It would put the tag on and take it off again at every evaluation.
        raise Invalid(
            "规则的条件不能判断它自己打的标签", code="rule_tests_own_tag", field="conditions"
        )
    return node


def _rule_snapshot(rule: TagRule) -> dict[str, Any]:
    return snapshot(rule, ("name", "tag", "conditions", "enabled", "remove_unmatched"))


def tag_rule_create(
    *,
    actor: Actor,
    name: str,
    tag_id: int,
    conditions: Any,
    enabled: bool = True,
    remove_unmatched: bool = True,
) -> TagRule:
    """Save a rule (its conditions checked, errors naming the part, e.g. conditions.all.1.value).
    It applies to each customer from its next event on; `rule_run` applies it to everyone now."""
    actor.require_tenant_wide(MANAGE)
    name = clean_name(name)
    with transaction.atomic(durable=True):
        tag = tag_for_update(actor, tag_id)
        _checked(actor.tenant_id, conditions, tag.pk)
        if TagRule.objects.filter(tenant_id=actor.tenant_id, name=name).exists():
            raise name_taken("自动标签规则")
        try:
            with transaction.atomic():
                rule = TagRule.objects.create(
                    tenant_id=actor.tenant_id,
                    name=name,
                    tag=tag,
                    conditions=conditions,
                    enabled=enabled,
                    remove_unmatched=remove_unmatched,
                    created_by_id=actor.employee_id,
                )
        except IntegrityError:
            raise name_taken("自动标签规则") from None
        _audit(
            actor, actor.tenant_id, "customers.tag_rule.created", rule, after=_rule_snapshot(rule)
        )
        return rule


def tag_rule_update(*, actor: Actor, rule_id: int, changes: Mapping[str, Any]) -> TagRule:
    """Change a rule. Its tag can change only while it has tagged nobody (its tags would lose the
    rule that explains them): make a new rule instead."""
    actor.require_tenant_wide(MANAGE)
    fields = ("name", "tag_id", "conditions", "enabled", "remove_unmatched")
    changes = {k: v for k, v in changes.items() if k in fields}
    with transaction.atomic(durable=True):
        rule = _rule_for_update(actor, rule_id)
        if "name" in changes:
            changes["name"] = clean_name(changes["name"])
            if (
                TagRule.objects.filter(tenant_id=actor.tenant_id, name=changes["name"])
                .exclude(pk=rule.pk)
                .exists()
            ):
                raise name_taken("自动标签规则")
        if "tag_id" in changes and changes["tag_id"] != rule.tag_id:
            tag_for_update(actor, changes["tag_id"])
            tagged = CustomerTag.objects.filter(tenant_id=actor.tenant_id, rule=rule).count()
            if tagged:
                raise Conflict(
                    f"该规则已给 {tagged} 位客户打过标签，不能更换标签；请新建一条规则",
                    code="rule_has_tagged",
                    field="tag_id",
                )
        _checked(
            actor.tenant_id,
            changes.get("conditions", rule.conditions),
            changes.get("tag_id", rule.tag_id),
        )
        before = _rule_snapshot(rule)
        for name, value in changes.items():
            setattr(rule, name, value)
        try:
            with transaction.atomic():
                rule.save()
        except IntegrityError:
            raise name_taken("自动标签规则") from None
        diff = changed(before, _rule_snapshot(rule))
        if diff:
            _audit(
                actor,
                actor.tenant_id,
                "customers.tag_rule.updated",
                rule,
                before={k: before[k] for k in diff},
                after=diff,
            )
        return TagRule.objects.select_related("tag__group").get(pk=rule.pk)


def tag_rule_delete(*, actor: Actor, rule_id: int, remove_tags: bool = False) -> int:
    """Delete a rule. The tags it set stay on the customers (shown as set by a deleted rule, and no
    rule removes them), unless `remove_tags`. Returns how many tags were removed."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        rule = _rule_for_update(actor, rule_id)
        removed = 0
        if remove_tags:
            removed = _remove_rule_tags(rule, timezone.now())
        _audit(
            actor,
            actor.tenant_id,
            "customers.tag_rule.deleted",
            rule,
            before=_rule_snapshot(rule),
            data={"removed_tags": removed},
        )
        rule.delete()
        return removed


def _remove_rule_tags(rule: TagRule, now: datetime) -> int:
    rows = list(
        CustomerTag.objects.filter(
            tenant_id=rule.tenant_id, rule=rule, source=TagSource.RULE
        ).values_list("pk", "customer_id")
    )
    return _delete_rule_rows(
        rule, rows, now, replaced=False, timeline=len(rows) <= TIMELINE_MAX_CHANGES
    )


def tag_rule_preview(
    *, actor: Actor, conditions_data: Any, now: datetime | None = None
) -> tuple[int, list[Customer]]:
    """Dry run: how many active customers the actor may see match, and the newest PREVIEW_SIZE."""
    actor.require(MANAGE)
    actor.require(VIEW)
    node = conditions.check(conditions_data, actor.tenant_id)
    matching = (
        Customer.objects.visible_to(actor, VIEW)
        .active()
        .filter(conditions.to_q(node, actor.tenant_id, now))
    )
    phones = Identity.objects.filter(kind=IdentityKind.PHONE, status=IdentityStatus.ACTIVE)
    first = matching.prefetch_related(
        Prefetch("identities", queryset=phones.order_by("id"), to_attr="active_phones")
    )[:PREVIEW_SIZE]
    return matching.count(), list(first)


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRule:
    rule: TagRule
    node: conditions.Node | None  # None: its conditions no longer check (e.g. a region deleted)
    error: str = ""

    @property
    def single(self) -> bool:
        return self.rule.tag.group.choice == TagChoice.SINGLE


def enabled_rules(tenant_id: int) -> list[LoadedRule]:
    """The tenant's enabled rules in evaluation order, parsed once (a batch of events reuses
    them). A rule whose conditions no longer check is carried with its error and skipped."""
    out = []
    for rule in (
        TagRule.objects.filter(tenant_id=tenant_id, enabled=True)
        .select_related("tag__group")
        .order_by("id")
    ):
        try:
            out.append(LoadedRule(rule, conditions.check(rule.conditions, tenant_id)))
        except Invalid as exc:
            out.append(LoadedRule(rule, None, f"{exc.field}：{exc.message}"))
    return out


def rules_apply_to_customer(
    *,
    tenant_id: int,
    customer_id: int,
    now: datetime | None = None,
    rules: Sequence[LoadedRule] | None = None,
) -> dict[str, list[int]]:
    """Evaluate the enabled rules for one customer (its survivor, if merged) and fix its tags, in
    the caller's transaction if there is one. Returns the tag ids added and removed."""
    now = now or timezone.now()
    target = survivor_id(tenant_id, customer_id)
    if target is None:
        return {"added": [], "removed": []}
    with transaction.atomic():
        customer = lock_customers([target])[target]
        loaded = enabled_rules(tenant_id) if rules is None else rules
        return _apply(customer, loaded, now)


def _apply(customer: Customer, rules: Sequence[LoadedRule], now: datetime) -> dict[str, list[int]]:
    links = {
        link.tag_id: link
        for link in CustomerTag.objects.filter(
            tenant_id=customer.tenant_id, customer=customer
        ).select_related("tag__group")
    }
    result: dict[str, list[int]] = {"added": [], "removed": []}
    drafts = []
    claimed: set[int] = set()  # single-choice groups in which an earlier rule matched
    for loaded in rules:
        if loaded.node is None:
            continue
        rule, diff = loaded.rule, TagDiff()
        link = links.get(rule.tag_id)
        matched = conditions.evaluate(loaded.node, customer, now)
        outranked = loaded.single and rule.tag.group_id in claimed
        if matched and loaded.single:
            claimed.add(rule.tag.group_id)
        if matched and link is None and not outranked:
            rivals = (
                [x for x in links.values() if x.tag.group_id == rule.tag.group_id]
                if loaded.single
                else []
            )
            if any(x.source != TagSource.RULE for x in rivals):
                continue  # a person chose this customer's tag in the group
            for rival in rivals:
                rival.delete()
                del links[rival.tag_id]
                diff.removed.append(rival.tag)
            try:
                with transaction.atomic():
                    links[rule.tag_id] = CustomerTag.objects.create(
                        tenant_id=customer.tenant_id,
                        customer=customer,
                        tag=rule.tag,
                        source=TagSource.RULE,
                        rule=rule,
                        tagged_at=now,
                    )
                diff.added.append(rule.tag)
            except IntegrityError:
                pass  # put on concurrently by the batch: the same outcome
        elif (
            not matched
            and link is not None
            and rule.remove_unmatched
            and link.source == TagSource.RULE
            and link.rule_id == rule.pk
        ):
            link.delete()
            del links[rule.tag_id]
            diff.removed.append(rule.tag)
        if diff:
            result["added"] += [t.pk for t in diff.added]
            result["removed"] += [t.pk for t in diff.removed]
            drafts.append(tag_change_event(customer.pk, diff, now, by=None, rule=rule))
            record(None, "customers.tags.changed", customer, data=tag_change_data(diff, rule))
    events_record_many(tenant_id=customer.tenant_id, events=drafts)
    return result


def rules_run_all(*, tenant_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Apply every enabled rule to every active customer of the tenant (the daily job; safe to
    rerun: a second run with no new events changes nothing). One transaction per rule."""
    now = now or timezone.now()
    started = time.perf_counter()
    runs = []
    for loaded in enabled_rules(tenant_id):
        with transaction.atomic(durable=True):
            stats = _run_locked(loaded.rule.pk, None, now)
        runs.append({"rule_id": loaded.rule.pk, "name": loaded.rule.name, **stats})
    return {
        "rules": runs,
        **{
            key: sum(r.get(key, 0) for r in runs)
            for key in ("added", "removed", "replaced", "kept_by_person")
        },
        "seconds": round(time.perf_counter() - started, 3),
    }


def rule_run(*, actor: Actor, rule_id: int, now: datetime | None = None) -> TagRule:
    """Apply one rule to every active customer now (立即执行); its run stats are on the rule."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        rule = _rule_for_update(actor, rule_id)
        if not rule.enabled:
            raise Conflict("规则已停用，启用后再执行", code="rule_disabled", field="rule_id")
        _run_locked(rule.pk, actor, now or timezone.now())
        return TagRule.objects.select_related("tag__group").get(pk=rule.pk)


def _run_locked(rule_id: int, actor: Actor | None, now: datetime) -> dict[str, Any]:
    # The rule row is locked: two runs of one rule take turns instead of racing on its tags.
    rule = TagRule.objects.select_for_update().select_related("tag__group").get(pk=rule_id)
    started = time.perf_counter()
    try:
        node = conditions.check(rule.conditions, rule.tenant_id)
    except Invalid as exc:
        stats: dict[str, Any] = {"error": f"{exc.field}：{exc.message}"}
    else:
        stats = _run(LoadedRule(rule, node), now)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    rule.last_run_at = now
    rule.last_run_stats = stats
    rule.save(update_fields=["last_run_at", "last_run_stats"])
    _audit(actor, rule.tenant_id, "customers.tag_rule.run", rule, data=stats)
    return stats


def _chunks(items: Sequence[Any], size: int = WRITE_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run(loaded: LoadedRule, now: datetime) -> dict[str, Any]:
    """The set-based evaluation of one rule over every active customer. Same outcome as `_apply`
    per customer: add where matched and missing (in a single-choice group only if no person chose
    the customer's tag there, replacing a rule's), remove this rule's own where not matched."""
    rule, tenant_id = loaded.rule, loaded.rule.tenant_id
    assert loaded.node is not None
    matched = set(
        conditions.customers_matching(loaded.node, tenant_id, now)
        .order_by()
        .values_list("pk", flat=True)
    )
    rows = list(
        CustomerTag.objects.filter(
            tenant_id=tenant_id, tag_id=rule.tag_id, customer__merged_into__isnull=True
        ).values_list("pk", "customer_id", "source", "rule_id")
    )
    to_add = matched - {customer for _, customer, _, _ in rows}
    replace: list[tuple[int, int]] = []
    kept_by_person = kept_by_earlier_rule = 0
    if loaded.single and to_add:
        # An earlier rule of the group that matches a customer outranks this one there.
        for earlier in enabled_rules(tenant_id):
            if (
                earlier.node is not None
                and earlier.rule.pk < rule.pk
                and earlier.rule.tag.group_id == rule.tag.group_id
            ):
                outranked = to_add & set(
                    conditions.customers_matching(earlier.node, tenant_id, now)
                    .order_by()
                    .values_list("pk", flat=True)
                )
                kept_by_earlier_rule += len(outranked)
                to_add -= outranked
    if loaded.single and to_add:
        blocked: set[int] = set()
        rivals = []
        for pk, customer, source in (
            CustomerTag.objects.filter(tenant_id=tenant_id, tag__group_id=rule.tag.group_id)
            .exclude(tag_id=rule.tag_id)
            .values_list("pk", "customer_id", "source")
        ):
            if customer in to_add:
                if source == TagSource.RULE:
                    rivals.append((pk, customer))
                else:
                    blocked.add(customer)
        kept_by_person = len(blocked)
        to_add -= blocked
        replace = [(pk, customer) for pk, customer in rivals if customer not in blocked]
    remove = (
        [
            (pk, customer)
            for pk, customer, source, rule_id in rows
            if source == TagSource.RULE and rule_id == rule.pk and customer not in matched
        ]
        if rule.remove_unmatched
        else []
    )
    # The nightly delta goes on each customer's timeline; a first run over a whole customer base
    # would write hundreds of thousands of bookkeeping entries, and says it in its stats instead.
    timeline = len(to_add) + len(replace) + len(remove) <= TIMELINE_MAX_CHANGES
    replaced = _delete_rule_rows(rule, replace, now, replaced=True, timeline=timeline)
    added = _insert_rule_rows(rule, sorted(to_add), now, timeline=timeline)
    removed = _delete_rule_rows(rule, remove, now, replaced=False, timeline=timeline)
    return {
        "matched": len(matched),
        "added": added,
        "removed": removed,
        "replaced": replaced,
        "kept_by_person": kept_by_person,
        "kept_by_earlier_rule": kept_by_earlier_rule,
        "timeline": timeline,
    }


def _insert_rule_rows(
    rule: TagRule, customer_ids: Sequence[int], now: datetime, *, timeline: bool
) -> int:
    """Tag the customers as set by `rule`; returns how many were tagged (a customer tagged by
    someone else meanwhile keeps their tag: the insert skips it)."""
    mine = CustomerTag.objects.filter(
        tenant_id=rule.tenant_id, tag_id=rule.tag_id, rule_id=rule.pk, source=TagSource.RULE
    )
    before = mine.count()
    for chunk in _chunks(customer_ids):
        CustomerTag.objects.bulk_create(
            [
                CustomerTag(
                    tenant_id=rule.tenant_id,
                    customer_id=pk,
                    tag_id=rule.tag_id,
                    source=TagSource.RULE,
                    rule_id=rule.pk,
                    tagged_at=now,
                )
                for pk in chunk
            ],
            ignore_conflicts=True,
        )
        if timeline:
            inserted = mine.filter(customer_id__in=chunk, tagged_at=now).values_list(
                "customer_id", flat=True
            )
            events_record_many(
                tenant_id=rule.tenant_id,
                events=[
                    tag_change_event(pk, TagDiff(added=[rule.tag]), now, by=None, rule=rule)
                    for pk in inserted
                ],
            )
    return mine.count() - before


def _delete_rule_rows(
    rule: TagRule,
    rows: Sequence[tuple[int, int]],
    now: datetime,
    *,
    replaced: bool,
    timeline: bool,
) -> int:
    """Delete tag rows (pk, customer id) set by this rule, or by any rule when `replaced` (a rival
    in a single-choice group). Who set them is checked again in the statement: a row a person has
    taken over since it was read is theirs now and stays."""
    removed = 0
    guard = Q(source=TagSource.RULE) if replaced else Q(source=TagSource.RULE, rule_id=rule.pk)
    tags = {t.pk: t for t in Tag.objects.filter(tenant_id=rule.tenant_id).select_related("group")}
    for chunk in _chunks(rows):
        doomed = CustomerTag.objects.filter(guard, pk__in=[pk for pk, _ in chunk])
        if not timeline:
            removed += doomed.delete()[0]
            continue
        gone = list(doomed.select_for_update().values_list("pk", "customer_id", "tag_id"))
        CustomerTag.objects.filter(pk__in=[pk for pk, _, _ in gone]).delete()
        removed += len(gone)
        events_record_many(
            tenant_id=rule.tenant_id,
            events=[
                tag_change_event(customer, TagDiff(removed=[tags[tag_id]]), now, by=None, rule=rule)
                for _, customer, tag_id in gone
            ],
        )
    return removed
