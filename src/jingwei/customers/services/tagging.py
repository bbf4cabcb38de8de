"""Tags: the tag catalogue (groups and tags) and the tags people put on customers.

Who set a tag matters. A person's tag (source manual, or one imported or synced from an
integration) is never taken off or replaced by a rule (see tag_rules). In a single-choice group a
customer holds at most one tag: a person's choice replaces whatever was there, whoever set it.

Every change of a customer's tags goes on its timeline (a `system` event) and on the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record, changed, snapshot
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from ..models import (
    Customer,
    CustomerTag,
    EventKind,
    ScoreSignal,
    Segment,
    Tag,
    TagChoice,
    TagGroup,
    TagRule,
    TagSource,
)
from .common import EDIT, MANAGE, VIEW, lock_customers, record, survivor_id
from .timeline import EventDraft, events_record_many

BULK_MAX = 1000  # customers in one bulk tagging; more is a job for a rule or a segment
WRITE_CHUNK = 5000  # rows per INSERT / DELETE of a bulk write
ID_MAX = 2**63 - 1  # the largest id a BIGINT holds: larger ones name nothing


def _storable(ids: Iterable[int]) -> set[int]:
    """The ids a row could have (an `in` lookup, unlike `=`, fails on larger ones)."""
    return {i for i in ids if 1 <= i <= ID_MAX}


# --- shared ----------------------------------------------------------------------------------


def readable_customer(actor: Actor, customer_id: int) -> Customer:
    """The customer `customer_id` (a merged one's id reads as the customer it lives in now) if the
    actor may view it; absent, another tenant's and out of scope all answer 404."""
    actor.require(VIEW)
    target = survivor_id(actor.tenant_id, customer_id)
    customer = (
        Customer.objects.visible_to(actor, VIEW).filter(pk=target).first()
        if target is not None
        else None
    )
    if customer is None:
        raise NotFound("客户不存在", field="customer_id")
    return customer


def _tag_label(tag: Tag) -> dict[str, Any]:
    return {"id": tag.pk, "name": tag.name, "group": tag.group.name}


def name_taken(what: str) -> Conflict:
    return Conflict(f"{what}已存在，请换一个名称", code="name_taken", field="name")


def clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid("名称不能为空", code="required", field="name")
    return name


def _audit(actor: Actor | None, tenant_id: int, action: str, subject: Any, **extra: Any) -> None:
    audit_record(actor=actor, tenant_id=tenant_id, action=action, subject=subject, **extra)


# --- the catalogue: groups and tags ----------------------------------------------------------


def tag_groups_list(*, actor: Actor) -> QuerySet[TagGroup]:
    """Every tag group of the tenant with its tags: anyone who sees customers reads the catalogue."""
    if not (actor.has_perm(VIEW) or actor.has_perm(MANAGE)):
        actor.require(VIEW)
    return TagGroup.objects.filter(tenant_id=actor.tenant_id).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.order_by("sort", "id"))
    )


def _group_for_update(actor: Actor, group_id: int) -> TagGroup:
    group = (
        TagGroup.objects.select_for_update().filter(tenant_id=actor.tenant_id, pk=group_id).first()
    )
    if group is None:
        raise NotFound("标签组不存在", field="group_id")
    return group


def tag_for_update(actor: Actor, tag_id: int, *, field: str = "tag_id") -> Tag:
    tag = (
        Tag.objects.select_for_update()
        .select_related("group")
        .filter(tenant_id=actor.tenant_id, pk=tag_id)
        .first()
    )
    if tag is None:
        raise NotFound("标签不存在", field=field)
    return tag


def tag_group_create(
    *, actor: Actor, name: str, choice: str = TagChoice.MULTI, description: str = "", sort: int = 0
) -> TagGroup:
    actor.require_tenant_wide(MANAGE)
    name = clean_name(name)
    with transaction.atomic(durable=True):
        if TagGroup.objects.filter(tenant_id=actor.tenant_id, name=name).exists():
            raise name_taken("标签组")
        try:
            with transaction.atomic():
                group = TagGroup.objects.create(
                    tenant_id=actor.tenant_id,
                    name=name,
                    choice=choice,
                    description=description,
                    sort=sort,
                )
        except IntegrityError:
            raise name_taken("标签组") from None
        _audit(actor, actor.tenant_id, "customers.tag_group.created", group, after=snapshot(group))
        return group


def tag_group_update(*, actor: Actor, group_id: int, changes: Mapping[str, Any]) -> TagGroup:
    """Rename, describe, reorder, or switch between single and multiple choice. Switching to single
    choice is refused while a customer holds two tags of the group (say which to keep first)."""
    actor.require_tenant_wide(MANAGE)
    fields = ("name", "choice", "description", "sort")
    changes = {k: v for k, v in changes.items() if k in fields}
    with transaction.atomic(durable=True):
        group = _group_for_update(actor, group_id)
        if "name" in changes:
            changes["name"] = clean_name(changes["name"])
            if (
                TagGroup.objects.filter(tenant_id=actor.tenant_id, name=changes["name"])
                .exclude(pk=group.pk)
                .exists()
            ):
                raise name_taken("标签组")
        if changes.get("choice") == TagChoice.SINGLE and group.choice != TagChoice.SINGLE:
            crowded = (
                CustomerTag.objects.filter(tenant_id=actor.tenant_id, tag__group=group)
                .values("customer_id")
                .annotate(n=Count("id"))
                .filter(n__gt=1)
                .count()
            )
            if crowded:
                raise Conflict(
                    f"有 {crowded} 位客户在该组有多个标签，无法改为单选；请先为他们只保留一个",
                    code="group_has_multiple",
                    field="choice",
                )
        before = snapshot(group, fields)
        for name, value in changes.items():
            setattr(group, name, value)
        try:
            with transaction.atomic():
                group.save(update_fields=list(changes) or None)
        except IntegrityError:
            raise name_taken("标签组") from None
        diff = changed(before, snapshot(group, fields))
        if diff:
            _audit(
                actor,
                actor.tenant_id,
                "customers.tag_group.updated",
                group,
                before={k: before[k] for k in diff},
                after=diff,
            )
        return group


def tag_group_delete(*, actor: Actor, group_id: int) -> None:
    """Delete an empty group (delete or move its tags first)."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        group = _group_for_update(actor, group_id)
        count = group.tags.count()
        if count:
            raise Conflict(
                f"标签组「{group.name}」下还有 {count} 个标签，请先删除这些标签",
                code="group_not_empty",
                field="group_id",
            )
        _audit(actor, actor.tenant_id, "customers.tag_group.deleted", group, before=snapshot(group))
        group.delete()


def tag_create(*, actor: Actor, group_id: int, name: str, color: str = "", sort: int = 0) -> Tag:
    actor.require_tenant_wide(MANAGE)
    name = clean_name(name)
    with transaction.atomic(durable=True):
        group = _group_for_update(actor, group_id)
        if Tag.objects.filter(tenant_id=actor.tenant_id, group=group, name=name).exists():
            raise name_taken(f"标签组「{group.name}」中的标签「{name}」")
        try:
            with transaction.atomic():
                tag = Tag.objects.create(
                    tenant_id=actor.tenant_id, group=group, name=name, color=color, sort=sort
                )
        except IntegrityError:
            raise name_taken(f"标签组「{group.name}」中的标签「{name}」") from None
        _audit(actor, actor.tenant_id, "customers.tag.created", tag, after=snapshot(tag))
        return tag


def tag_update(*, actor: Actor, tag_id: int, changes: Mapping[str, Any]) -> Tag:
    actor.require_tenant_wide(MANAGE)
    fields = ("name", "color", "sort")
    changes = {k: v for k, v in changes.items() if k in fields}
    with transaction.atomic(durable=True):
        tag = tag_for_update(actor, tag_id)
        if "name" in changes:
            changes["name"] = clean_name(changes["name"])
            if (
                Tag.objects.filter(tenant_id=actor.tenant_id, group=tag.group, name=changes["name"])
                .exclude(pk=tag.pk)
                .exists()
            ):
                raise name_taken(f"标签组「{tag.group.name}」中的标签「{changes['name']}」")
        before = snapshot(tag, fields)
        for name, value in changes.items():
            setattr(tag, name, value)
        try:
            with transaction.atomic():
                tag.save(update_fields=list(changes) or None)
        except IntegrityError:
            raise name_taken("标签") from None
        diff = changed(before, snapshot(tag, fields))
        if diff:
            _audit(
                actor,
                actor.tenant_id,
                "customers.tag.updated",
                tag,
                before={k: before[k] for k in diff},
                after=diff,
            )
        return tag


def _mentions_tag(node: Any, tag_id: int) -> bool:
    """Whether a stored condition (raw JSON, maybe no longer valid) refers to the tag."""
    if isinstance(node, Mapping):
        if node.get("tag") == tag_id and "field" not in node and "event" not in node:
            return True
        return any(_mentions_tag(v, tag_id) for v in node.values())
    if isinstance(node, list):
        return any(_mentions_tag(v, tag_id) for v in node)
    return False


def tag_delete(*, actor: Actor, tag_id: int, force: bool = False) -> int:
    """Delete a tag. Refused while a rule sets it, or a rule, segment or score signal tests it
    (change those first). Refused while customers hold it, unless `force`: then it is taken off
    them too (the audit event says how many). Returns how many customers lost it."""
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        tag = tag_for_update(actor, tag_id)
        setters = list(tag.rules.values_list("name", flat=True))
        if setters:
            raise Conflict(
                f"自动标签规则「{'」「'.join(setters)}」会打这个标签，请先删除或修改这些规则",
                code="tag_has_rules",
                field="tag_id",
            )
        users = [
            f"{label}「{name}」"
            for label, model in (
                ("自动标签规则", TagRule),
                ("分群", Segment),
                ("评分项", ScoreSignal),
            )
            for name, tree in model.objects.filter(tenant_id=actor.tenant_id).values_list(
                "name", "conditions"
            )
            if _mentions_tag(tree, tag.pk)
        ]
        if users:
            raise Conflict(
                f"{'、'.join(users)}的条件用到了这个标签，请先修改这些条件",
                code="tag_referenced",
                field="tag_id",
            )
        links = CustomerTag.objects.filter(tenant_id=actor.tenant_id, tag=tag)
        held = links.count()
        if held and not force:
            raise Conflict(
                f"有 {held} 位客户带有标签「{tag.name}」；确认一并移除请加参数 force=true",
                code="tag_in_use",
                field="tag_id",
            )
        links.delete()
        _audit(
            actor,
            actor.tenant_id,
            "customers.tag.deleted",
            tag,
            before=snapshot(tag),
            data={"removed_from_customers": held},
        )
        tag.delete()
        return held


# --- tags on customers -----------------------------------------------------------------------


def customer_tags_list(*, actor: Actor, customer_id: int) -> QuerySet[CustomerTag]:
    """The customer's tags with who or which rule set them and when, in catalogue order."""
    customer = readable_customer(actor, customer_id)
    return (
        CustomerTag.objects.filter(tenant_id=actor.tenant_id, customer=customer)
        .select_related("tag__group", "rule", "tagged_by")
        .order_by("tag__group__sort", "tag__group_id", "tag__sort", "tag_id")
    )


@dataclass
class TagDiff:
    """What one operation did to one customer's tags."""

    added: list[Tag] = field(default_factory=list)
    removed: list[Tag] = field(default_factory=list)
    confirmed: list[Tag] = field(default_factory=list)  # a rule's or import's tag, now a person's

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.confirmed)


def _tags_by_id(actor: Actor, ids: Sequence[int], field: str) -> dict[int, Tag]:
    found = {
        t.pk: t
        for t in Tag.objects.filter(
            tenant_id=actor.tenant_id, pk__in=_storable(ids)
        ).select_related("group")
    }
    for i, pk in enumerate(ids):
        if pk not in found:
            raise NotFound("标签不存在", field=f"{field}.{i}")
    return found


def _check_single_choice(tags: Sequence[Tag], field: str) -> None:
    seen: dict[int, Tag] = {}
    for i, tag in enumerate(tags):
        if tag.group.choice != TagChoice.SINGLE:
            continue
        if tag.group_id in seen and seen[tag.group_id].pk != tag.pk:
            raise Invalid(
                f"「{tag.group.name}」是单选标签组，「{seen[tag.group_id].name}」和「{tag.name}」只能选一个",
                code="single_choice",
                field=f"{field}.{i}",
            )
        seen[tag.group_id] = tag


def _editable_customers(actor: Actor, ids: Sequence[int], field: str) -> list[Customer]:
    """Lock the customers (all of them, or raise naming the first one that is not editable)."""
    actor.require(EDIT)
    editable = set(
        Customer.objects.visible_to(actor, EDIT)
        .filter(pk__in=_storable(ids))
        .values_list("pk", flat=True)
    )
    for i, pk in enumerate(ids):
        if pk not in editable:
            raise NotFound("客户不存在", field=f"{field}.{i}" if field != "customer_id" else field)
    locked = lock_customers(ids)
    for i, pk in enumerate(ids):
        merged_into = locked[pk].merged_into_id
        if merged_into is not None:
            raise Conflict(
                f"客户 {pk} 已合并到客户 {merged_into}，请在合并后的客户上操作",
                code="customer_merged",
                field=f"{field}.{i}" if field != "customer_id" else field,
            )
    return [locked[pk] for pk in dict.fromkeys(ids)]


def _set_by_person(
    actor: Actor, customers: Sequence[Customer], add: Sequence[Tag], remove: Sequence[Tag]
) -> dict[int, TagDiff]:
    """Put `add` on and take `remove` off every customer, as the actor's choice: all in a few
    statements whatever the number of customers. A tag of a single-choice group replaces the
    customer's other tag of that group, whoever set it."""
    tenant_id = actor.tenant_id
    now = timezone.now()
    ids = [c.pk for c in customers]
    adding = {t.pk: t for t in add}
    single = {t.group_id: t for t in add if t.group.choice == TagChoice.SINGLE}
    links = CustomerTag.objects.filter(tenant_id=tenant_id, customer_id__in=ids).filter(
        Q(tag_id__in=[*adding, *(t.pk for t in remove)]) | Q(tag__group_id__in=single)
    )
    removing = {t.pk for t in remove}
    diffs = {pk: TagDiff() for pk in ids}
    held: dict[int, set[int]] = {pk: set() for pk in ids}
    drop, confirm = [], []
    for link in links.select_related("tag__group"):
        diff = diffs[link.customer_id]
        chosen = single.get(link.tag.group_id)
        if link.tag_id in removing or (chosen is not None and chosen.pk != link.tag_id):
            drop.append(link.pk)
            diff.removed.append(link.tag)
        elif link.tag_id in adding:
            held[link.customer_id].add(link.tag_id)
            if link.source != TagSource.MANUAL:
                confirm.append(link.pk)
                diff.confirmed.append(link.tag)
    CustomerTag.objects.filter(pk__in=drop).delete()
    CustomerTag.objects.filter(pk__in=confirm).update(
        source=TagSource.MANUAL, rule=None, tagged_by_id=actor.employee_id, tagged_at=now
    )
    new = []
    for pk in ids:
        for tag in add:
            if tag.pk not in held[pk]:
                new.append(
                    CustomerTag(
                        tenant_id=tenant_id,
                        customer_id=pk,
                        tag=tag,
                        source=TagSource.MANUAL,
                        tagged_by_id=actor.employee_id,
                        tagged_at=now,
                    )
                )
                diffs[pk].added.append(tag)
    CustomerTag.objects.bulk_create(new, batch_size=WRITE_CHUNK)
    changed_customers = [c for c in customers if diffs[c.pk]]
    events_record_many(
        tenant_id=tenant_id,
        events=[
            tag_change_event(c.pk, diffs[c.pk], now, by=actor, rule=None) for c in changed_customers
        ],
    )
    for customer in changed_customers:
        record(actor, "customers.tags.changed", customer, data=tag_change_data(diffs[customer.pk]))
    return diffs


def tag_change_data(diff: TagDiff, rule: TagRule | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "added": [_tag_label(t) for t in diff.added],
        "removed": [_tag_label(t) for t in diff.removed],
    }
    if diff.confirmed:
        data["confirmed"] = [_tag_label(t) for t in diff.confirmed]
    if rule is not None:
        data["rule"] = {"id": rule.pk, "name": rule.name}
    return data


def tag_change_event(
    customer_id: int, diff: TagDiff, now: datetime, *, by: Actor | None, rule: TagRule | None
) -> EventDraft:
    parts = []
    if diff.added:
        parts.append("添加标签「" + "」「".join(t.name for t in diff.added) + "」")
    if diff.removed:
        parts.append("移除标签「" + "」「".join(t.name for t in diff.removed) + "」")
    if diff.confirmed:
        parts.append("确认标签「" + "」「".join(t.name for t in diff.confirmed) + "」")
    who = f"自动标签规则「{rule.name}」" if rule is not None else (by.name if by else "系统")
    data = tag_change_data(diff, rule)
    data["source"] = TagSource.RULE.value if rule is not None else TagSource.MANUAL.value
    if by is not None:
        data["by"] = {"id": by.employee_id, "name": by.name}
    return EventDraft(
        customer_id=customer_id,
        kind=EventKind.SYSTEM,
        title=f"{who}：{'；'.join(parts)}",
        occurred_at=now,
        data=data,
        channel="tags",
    )


def customer_tags_add(*, actor: Actor, customer_id: int, tag_ids: Sequence[int]) -> Customer:
    """Tag a customer as the actor's choice. A tag it already has by a rule or an import becomes
    the actor's (a rule will not take it off any more)."""
    if not tag_ids:
        raise Invalid("请选择至少一个标签", code="required", field="tag_ids")
    with transaction.atomic(durable=True):
        (customer,) = _editable_customers(actor, [customer_id], "customer_id")
        tags = _tags_by_id(actor, tag_ids, "tag_ids")
        chosen = [tags[pk] for pk in dict.fromkeys(tag_ids)]
        _check_single_choice(chosen, "tag_ids")
        _set_by_person(actor, [customer], chosen, [])
        return customer


def customer_tag_remove(*, actor: Actor, customer_id: int, tag_id: int) -> Customer:
    """Take a tag off a customer (whoever set it; a tag the customer lacks changes nothing). A rule
    that still matches will put its tag back at its next evaluation: change the rule for good."""
    with transaction.atomic(durable=True):
        (customer,) = _editable_customers(actor, [customer_id], "customer_id")
        tag = _tags_by_id(actor, [tag_id], "tag_id")[tag_id]
        _set_by_person(actor, [customer], [], [tag])
        return customer


def customers_tag_bulk(
    *,
    actor: Actor,
    customer_ids: Sequence[int],
    add_tag_ids: Sequence[int] = (),
    remove_tag_ids: Sequence[int] = (),
) -> dict[str, int]:
    """Tag and untag up to BULK_MAX customers at once: all of them or none (one customer the actor
    may not edit refuses the whole request, naming it)."""
    if not customer_ids:
        raise Invalid("请选择客户", code="required", field="customer_ids")
    if len(customer_ids) > BULK_MAX:
        raise Invalid(
            f"一次最多 {BULK_MAX} 位客户；更多请用自动标签规则",
            code="too_many",
            field="customer_ids",
        )
    if not add_tag_ids and not remove_tag_ids:
        raise Invalid("请选择要添加或移除的标签", code="required", field="add_tag_ids")
    both = set(add_tag_ids) & set(remove_tag_ids)
    if both:
        index = list(remove_tag_ids).index(sorted(both)[0])
        raise Invalid(
            "同一个标签不能同时添加和移除", code="add_and_remove", field=f"remove_tag_ids.{index}"
        )
    with transaction.atomic(durable=True):
        return tags_set_in_transaction(
            actor=actor,
            customer_ids=customer_ids,
            add_tag_ids=add_tag_ids,
            remove_tag_ids=remove_tag_ids,
        )


def tags_set_in_transaction(
    *,
    actor: Actor,
    customer_ids: Sequence[int],
    add_tag_ids: Sequence[int] = (),
    remove_tag_ids: Sequence[int] = (),
) -> dict[str, int]:
    """`customers_tag_bulk` inside the caller's transaction (the demo loader's)."""
    customers = _editable_customers(actor, customer_ids, "customer_ids")
    adding = _tags_by_id(actor, add_tag_ids, "add_tag_ids")
    removing = _tags_by_id(actor, remove_tag_ids, "remove_tag_ids")
    add = [adding[pk] for pk in dict.fromkeys(add_tag_ids)]
    _check_single_choice(add, "add_tag_ids")
    remove = [removing[pk] for pk in dict.fromkeys(remove_tag_ids)]
    diffs = _set_by_person(actor, customers, add, remove)
    return {
        "customers": len(customers),
        "changed": sum(1 for d in diffs.values() if d),
        "added": sum(len(d.added) for d in diffs.values()),
        "removed": sum(len(d.removed) for d in diffs.values()),
    }
