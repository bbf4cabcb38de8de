"""The Citus door stays open (DESIGN §6): every table of the project either belongs to a tenant
and keeps its keys and references within that tenant, or is one of a few shared reference tables.

The checker works on model classes, so it also judges hand-built bad models (isolated from the
project's app registry) to show that it fails when someone adds a violating table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.db.models import F, Q, UniqueConstraint
from django.db.models.functions import Lower
from django.test.utils import isolate_apps

from jingwei.core.models import TenantModel

# Shared reference tables of the project itself: not tenant-owned, replicated to every node.
SHARED_TABLES = {"org.Tenant", "org.Permission"}
# What a tenant-owned row may reference outside its own tenant (besides other tenant rows).
SHARED_REFERENCES = SHARED_TABLES | {"auth.User"}


def project_models() -> list[type[models.Model]]:
    """Every concrete model of the jingwei.* apps, implicit many-to-many tables included."""
    return [
        m
        for m in apps.get_models(include_auto_created=True)
        if m._meta.app_config is not None and m._meta.app_config.name.startswith("jingwei.")
    ]


def label(model: type[models.Model]) -> str:
    return model._meta.label


def _target(field: Any, model: type[models.Model]) -> type[models.Model] | str:
    """The model a relation points at, resolved in the model's registry or the project's."""
    target = field.remote_field.model
    if isinstance(target, str):
        for registry in (model._meta.apps, apps):
            try:
                return registry.get_model(target)
            except (LookupError, ValueError):
                continue
    return target


def _is_tenant_model(model: type[models.Model] | str) -> bool:
    return isinstance(model, type) and issubclass(model, TenantModel)


def _referenced(expression: Any) -> Iterator[str]:
    if isinstance(expression, F):
        yield expression.name
    for child in getattr(expression, "get_source_expressions", list)():
        yield from _referenced(child)


def _names_in(constraint: UniqueConstraint) -> set[str]:
    """Field names a unique constraint covers, whether listed as fields or as expressions."""
    names = set(constraint.fields)
    for expression in constraint.expressions:
        names.update(_referenced(expression))
    return names


def tenancy_violations(model: type[models.Model]) -> list[str]:
    """What about `model` breaks the tenancy layout; empty when nothing does."""
    name = label(model)
    problems: list[str] = []
    relations = [
        f for f in model._meta.get_fields(include_hidden=True) if f.concrete or f.many_to_many
    ]
    relations = [f for f in relations if f.is_relation and not f.auto_created]

    if not _is_tenant_model(model):
        if name not in SHARED_TABLES:
            return [f"{name} is neither a TenantModel nor a listed shared table"]
        for f in relations:
            if _is_tenant_model(_target(f, model)):
                problems.append(f"{name}.{f.name}: a shared table references tenant rows")
        return problems

    tenant_keys = {"tenant", "tenant_id"}
    for constraint in model._meta.constraints:
        if isinstance(constraint, UniqueConstraint) and not _names_in(constraint) & tenant_keys:
            problems.append(f"{name}: unique constraint {constraint.name} lacks tenant")
    for fields in model._meta.unique_together:
        if not set(fields) & tenant_keys:
            problems.append(f"{name}: unique_together {tuple(fields)} lacks tenant")
    for f in model._meta.concrete_fields:
        if f.unique and not f.primary_key:
            problems.append(f"{name}.{f.name}: unique=True is unique across tenants")
    for f in relations:
        target = _target(f, model)
        target_label = label(target) if isinstance(target, type) else str(target)
        if not _is_tenant_model(target) and target_label not in SHARED_REFERENCES:
            problems.append(f"{name}.{f.name} points at {target_label}, not a tenant table")
        if f.many_to_many:
            through = f.remote_field.through
            if isinstance(through, str) or through._meta.auto_created:
                problems.append(f"{name}.{f.name}: many-to-many without an explicit through")
            elif not _is_tenant_model(through):
                problems.append(f"{name}.{f.name}: through {label(through)} is not a TenantModel")
    return problems


# --- the project ---------------------------------------------------------------------------


def test_the_walk_covers_the_project_tables() -> None:
    found = {label(m) for m in project_models()}
    assert {"org.Employee", "org.RolePermission", "audit.AuditEvent", "core.Timer"} <= found
    assert {"notify.Notification", "org.Tenant", "org.Permission"} <= found
    assert not any(name.startswith("auth.") for name in found)


@pytest.mark.parametrize("model", project_models(), ids=label)
def test_every_project_table_keeps_to_one_tenant_or_is_shared(model: type[models.Model]) -> None:
    assert tenancy_violations(model) == []


def test_the_shared_lists_stay_small_and_real() -> None:
    """Widening the allow-lists is a design decision, not a way to make this test pass."""
    assert sorted(SHARED_TABLES) == ["org.Permission", "org.Tenant"]
    assert sorted(SHARED_REFERENCES - SHARED_TABLES) == ["auth.User"]
    for shared in SHARED_REFERENCES:
        assert not issubclass(apps.get_model(shared), TenantModel)


# --- the checker on hand-built models ------------------------------------------------------


@pytest.fixture
def synthetic() -> Any:
    """A scratch registry for bad models, so the project's own registry never sees them."""
    with isolate_apps("jingwei.core", "jingwei.org") as registry:
        yield registry


def test_a_well_formed_tenant_table_passes(synthetic: Any) -> None:
    class Shelf(TenantModel):
        code = models.CharField(max_length=10)

        class Meta:
            app_label = "core"
            constraints = [UniqueConstraint(fields=["tenant", "code"], name="shelf_code")]

    class Box(TenantModel):
        shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE)
        owner = models.ForeignKey("auth.User", on_delete=models.CASCADE)
        permissions = models.ManyToManyField(
            "org.Permission", through="BoxPermission", related_name="+"
        )
        parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE)

        class Meta:
            app_label = "core"
            unique_together = [("tenant", "shelf")]

    class BoxPermission(TenantModel):
        box = models.ForeignKey(Box, on_delete=models.CASCADE)
        permission = models.ForeignKey("org.Permission", on_delete=models.CASCADE)

        class Meta:
            app_label = "core"

    for model in (Shelf, Box, BoxPermission):
        assert tenancy_violations(model) == [], model


def test_a_globally_unique_field_is_flagged(synthetic: Any) -> None:
    class Ticket(TenantModel):
        number = models.CharField(max_length=20, unique=True)

        class Meta:
            app_label = "core"

    assert tenancy_violations(Ticket) == [
        "core.Ticket.number: unique=True is unique across tenants"
    ]


def test_unique_constraints_without_tenant_are_flagged(synthetic: Any) -> None:
    class Ticket(TenantModel):
        number = models.CharField(max_length=20)
        code = models.CharField(max_length=20)

        class Meta:
            app_label = "core"
            unique_together = [("number",)]
            constraints = [
                UniqueConstraint(fields=["code"], condition=~Q(code=""), name="ticket_code"),
                UniqueConstraint(Lower("code"), name="ticket_code_expr"),
            ]

    assert tenancy_violations(Ticket) == [
        "core.Ticket: unique constraint ticket_code lacks tenant",
        "core.Ticket: unique constraint ticket_code_expr lacks tenant",
        "core.Ticket: unique_together ('number',) lacks tenant",
    ]


def test_references_outside_the_tenant_are_flagged(synthetic: Any) -> None:
    class Ticket(TenantModel):
        group = models.ForeignKey("auth.Group", on_delete=models.CASCADE)
        twin = models.OneToOneField("org.Employee", on_delete=models.CASCADE)

        class Meta:
            app_label = "core"

    assert sorted(tenancy_violations(Ticket)) == [
        "core.Ticket.group points at auth.Group, not a tenant table",
        "core.Ticket.twin: unique=True is unique across tenants",
    ]


def test_many_to_many_must_go_through_a_tenant_table(synthetic: Any) -> None:
    class Link(models.Model):  # noqa: DJ008
        ticket = models.ForeignKey("core.Ticket", on_delete=models.CASCADE)
        employee = models.ForeignKey("org.Employee", on_delete=models.CASCADE)

        class Meta:
            app_label = "core"

    class Ticket(TenantModel):
        watchers = models.ManyToManyField("org.Employee", related_name="+")
        linked = models.ManyToManyField("org.Employee", through=Link, related_name="+")

        class Meta:
            app_label = "core"

    assert tenancy_violations(Ticket) == [
        "core.Ticket.watchers: many-to-many without an explicit through",
        "core.Ticket.linked: through core.Link is not a TenantModel",
    ]
    assert tenancy_violations(Link) == [
        "core.Link is neither a TenantModel nor a listed shared table"
    ]
    implicit = Ticket._meta.get_field("watchers").remote_field.through
    assert tenancy_violations(implicit)[0].endswith(
        "neither a TenantModel nor a listed shared table"
    )


def test_a_shared_table_may_not_reference_tenant_rows(synthetic: Any) -> None:
    class Tenant(models.Model):  # noqa: DJ008 (poses as the listed shared org.Tenant)
        default_region = models.ForeignKey("org.Region", on_delete=models.CASCADE)

        class Meta:
            app_label = "org"

    assert tenancy_violations(Tenant) == [
        "org.Tenant.default_region: a shared table references tenant rows"
    ]
