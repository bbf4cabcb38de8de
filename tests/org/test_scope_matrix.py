"""The data scope, checked on random organisations against an independent oracle.

Each example draws a department tree, a region tree, employees placed in them, roles holding
random permission subsets, and role assignments (every scope, some anchored at an explicit node,
some temporary around MOMENT, some revoked), for two tenants. For every employee of both tenants
and every permission code, what `visible_to` returns must be exactly what the oracle allows.

The oracle works on the drawn description only: subtrees come from walking parent links in
Python, grants in force from comparing offsets to MOMENT. It never reads a materialised path,
`actor_for`, `in_force` or `scope_q`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Forbidden
from jingwei.notify.models import Notification
from jingwei.org.models import (
    DataScope,
    Department,
    Employee,
    Region,
    RoleAssignment,
    Tenant,
)
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, make_department, make_region, make_role

MOMENT = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
CODE_POOL = ("org.view", "org.manage", "audit.view", "customer.view")
NEVER_GRANTED = "ticket.view"
CHECKED_CODES = (*CODE_POOL, NEVER_GRANTED)
SCOPES = tuple(DataScope.values)
# Hours around MOMENT for starts_at / expires_at; 0 is the boundary itself.
OFFSETS = (-48, -1, 0, 1, 48)

SCOPE_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- what an example draws -----------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentSpec:
    employee: int
    role: int
    scope: str
    department: int | None  # explicit anchor, index into the department tree
    region: int | None
    starts: int | None  # hours from MOMENT
    expires: int | None
    revoked: bool


@dataclass(frozen=True)
class World:
    """One tenant's organisation, as indices. Trees are parent indices (None for a root)."""

    departments: tuple[int | None, ...]
    regions: tuple[int | None, ...]
    employees: tuple[tuple[int | None, int | None], ...]  # (department, region)
    roles: tuple[frozenset[str], ...]
    assignments: tuple[AssignmentSpec, ...]
    audit_events: tuple[tuple[int | None, int | None, int | None], ...]  # (actor, dept, region)
    notifications: tuple[int, ...]  # recipient


@st.composite
def forests(draw: Any, max_nodes: int = 6) -> tuple[int | None, ...]:
    """Parent index per node; node i's parent comes before it. Biased towards deep chains."""
    parents: list[int | None] = [None]
    for i in range(1, draw(st.integers(1, max_nodes))):
        parents.append(draw(st.one_of(st.none(), st.just(i - 1), st.integers(0, i - 1))))
    return tuple(parents)


def maybe_index(n: int) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), st.integers(0, n - 1))


@st.composite
def worlds(draw: Any) -> World:
    departments = draw(forests())
    regions = draw(forests())
    n_employees = draw(st.integers(1, 6))
    employees = tuple(
        (draw(maybe_index(len(departments))), draw(maybe_index(len(regions))))
        for _ in range(n_employees)
    )
    roles = tuple(
        draw(st.frozensets(st.sampled_from(CODE_POOL))) for _ in range(draw(st.integers(1, 3)))
    )
    timing = st.one_of(st.none(), st.sampled_from(OFFSETS))
    assignments = draw(
        st.lists(
            st.builds(
                AssignmentSpec,
                employee=st.integers(0, n_employees - 1),
                role=st.integers(0, len(roles) - 1),
                scope=st.sampled_from(SCOPES),
                department=maybe_index(len(departments)),
                region=maybe_index(len(regions)),
                starts=timing,
                expires=timing,
                revoked=st.booleans(),
            ),
            max_size=8,
        )
    )
    audit_events = draw(
        st.lists(
            st.tuples(
                maybe_index(n_employees),
                maybe_index(len(departments)),
                maybe_index(len(regions)),
            ),
            max_size=6,
        )
    )
    notifications = draw(st.lists(st.integers(0, n_employees - 1), max_size=6))
    return World(
        departments=departments,
        regions=regions,
        employees=employees,
        roles=roles,
        assignments=tuple(assignments),
        audit_events=tuple(audit_events),
        notifications=tuple(notifications),
    )


# --- the oracle ----------------------------------------------------------------------------


def ancestors_or_self(parents: Sequence[int | None], node: int | None) -> Iterator[int]:
    while node is not None:
        yield node
        node = parents[node]


def subtree(parents: Sequence[int | None], root: int) -> set[int]:
    return {n for n in range(len(parents)) if root in ancestors_or_self(parents, n)}


def holds(a: AssignmentSpec) -> bool:
    """In force at MOMENT: not revoked, started (at or before), not yet expired (strictly after)."""
    started = a.starts is None or a.starts <= 0
    unexpired = a.expires is None or a.expires > 0
    return not a.revoked and started and unexpired


@dataclass(frozen=True)
class OracleGrant:
    scope: str
    department: int | None  # anchor: the explicit one, else the holder's own
    region: int | None


def oracle_grants(world: World, holder: int, code: str) -> list[OracleGrant]:
    own_department, own_region = world.employees[holder]
    return [
        OracleGrant(
            a.scope,
            a.department if a.department is not None else own_department,
            a.region if a.region is not None else own_region,
        )
        for a in world.assignments
        if a.employee == holder and holds(a) and code in world.roles[a.role]
    ]


@dataclass(frozen=True)
class Fields:
    """Which scope fields a model has (None: the model declares no scope fields at all)."""

    owner: bool
    department: bool
    region: bool


# A row, for the oracle: (owner employee index, department index, region index).
Row = tuple[int | None, int | None, int | None]


def oracle_visible(
    world: World, holder: int, code: str, rows: Sequence[Row], fields: Fields | None
) -> set[int]:
    """Indices of `rows` the holder may see with `code`."""
    grants = oracle_grants(world, holder, code)
    if not grants:
        return set()
    if fields is None or any(g.scope == DataScope.TENANT for g in grants):
        return set(range(len(rows)))
    seen = set()
    for i, (owner, department, region) in enumerate(rows):
        if fields.owner and owner == holder:
            seen.add(i)
        for g in grants:
            if (
                g.scope == DataScope.REGION
                and fields.region
                and g.region is not None
                and region is not None
                and region in subtree(world.regions, g.region)
            ):
                seen.add(i)
            if (
                g.scope == DataScope.DEPARTMENT
                and fields.department
                and g.department is not None
                and department is not None
                and department in subtree(world.departments, g.department)
            ):
                seen.add(i)
    return seen


# --- building a world in the database ------------------------------------------------------


@dataclass
class Built:
    world: World
    tenant: Tenant
    departments: list[Department]
    regions: list[Region]
    employees: list[Employee]
    audit_events: list[AuditEvent]
    notifications: list[Notification]


def at(offset: int | None) -> dt.datetime | None:
    return None if offset is None else MOMENT + dt.timedelta(hours=offset)


def build(world: World, slug: str) -> Built:
    tenant = Tenant.objects.create(name=slug, slug=slug)
    departments: list[Department] = []
    for i, parent in enumerate(world.departments):
        departments.append(
            make_department(tenant, f"部门{i}", None if parent is None else departments[parent])
        )
    regions: list[Region] = []
    for i, parent in enumerate(world.regions):
        regions.append(make_region(tenant, f"区域{i}", None if parent is None else regions[parent]))

    def department(i: int | None) -> Department | None:
        return None if i is None else departments[i]

    def region(i: int | None) -> Region | None:
        return None if i is None else regions[i]

    employees = [
        EmployeeFactory(tenant=tenant, department=department(d), region=region(r))
        for d, r in world.employees
    ]
    roles = [make_role(tenant, f"角色{i}", sorted(codes)) for i, codes in enumerate(world.roles)]
    for a in world.assignments:
        RoleAssignment.objects.create(
            tenant=tenant,
            employee=employees[a.employee],
            role=roles[a.role],
            scope=a.scope,
            department=department(a.department),
            region=region(a.region),
            starts_at=at(a.starts),
            expires_at=at(a.expires),
            revoked_at=MOMENT - dt.timedelta(days=3) if a.revoked else None,
        )
    audit_events = [
        AuditEvent.objects.create(
            tenant=tenant,
            at=MOMENT,
            actor=None if who is None else employees[who],
            department=department(d),
            region=region(r),
            action="test.scope",
        )
        for who, d, r in world.audit_events
    ]
    notifications = [
        Notification.objects.create(
            tenant=tenant, recipient=employees[who], kind="test.scope", title="测试"
        )
        for who in world.notifications
    ]
    return Built(world, tenant, departments, regions, employees, audit_events, notifications)


def scoped_tables(built: Built) -> list[tuple[type[Any], list[Any], list[Row], Fields | None]]:
    """(model, its rows in this tenant, the same rows for the oracle, its scope fields)."""
    w = built.world
    return [
        (
            Employee,
            built.employees,
            [(i, d, r) for i, (d, r) in enumerate(w.employees)],
            Fields(owner=True, department=True, region=True),
        ),
        (AuditEvent, built.audit_events, list(w.audit_events), Fields(True, True, True)),
        # Owner only: department and region grants give nothing beyond one's own inbox.
        (
            Notification,
            built.notifications,
            [(who, None, None) for who in w.notifications],
            Fields(owner=True, department=False, region=False),
        ),
        # No scope fields: tenant-wide reference data for anyone holding the code at all.
        (Department, built.departments, [(None, None, None)] * len(w.departments), None),
    ]


def check_scope(built: Built, other: Built) -> None:
    other_rows = {model: {row.pk for row in rows} for model, rows, _, _ in scoped_tables(other)}
    for holder, employee in enumerate(built.employees):
        actor = actor_for(employee, at=MOMENT)
        for code in CHECKED_CODES:
            for model, rows, oracle_rows, fields in scoped_tables(built):
                seen = set(model.objects.visible_to(actor, code).values_list("pk", flat=True))
                allowed = {
                    rows[i].pk
                    for i in oracle_visible(built.world, holder, code, oracle_rows, fields)
                }
                where = f"{model.__name__} seen by employee #{holder} with {code}"
                assert not seen & other_rows[model], f"{where}: another tenant's rows leak"
                assert seen - allowed == set(), f"{where}: rows beyond the scope"
                assert allowed - seen == set(), f"{where}: rows in scope are missing"


def assert_nothing_left_behind() -> None:
    """Each example rolls back its own rows, so the next one starts from an empty organisation."""
    assert not Tenant.objects.filter(slug__in=["scope-a", "scope-b"]).exists()
    assert not RoleAssignment.objects.exists()
    assert not AuditEvent.objects.filter(action="test.scope").exists()


# --- the properties ------------------------------------------------------------------------


@pytest.mark.django_db
@SCOPE_SETTINGS
@given(mine=worlds(), theirs=worlds())
def test_everyone_sees_exactly_the_rows_their_grants_in_force_reach(
    mine: World, theirs: World
) -> None:
    with transaction.atomic():
        a = build(mine, "scope-a")
        b = build(theirs, "scope-b")
        check_scope(a, b)
        check_scope(b, a)
        transaction.set_rollback(True)
    assert_nothing_left_behind()


@pytest.mark.django_db
@SCOPE_SETTINGS
@given(mine=worlds(), theirs=worlds())
def test_an_actor_holds_a_permission_exactly_when_a_grant_in_force_gives_it(
    mine: World, theirs: World
) -> None:
    with transaction.atomic():
        a = build(mine, "scope-a")
        build(theirs, "scope-b")
        for holder, employee in enumerate(a.employees):
            actor = actor_for(employee, at=MOMENT)
            for code in PERMISSIONS:
                expected = bool(oracle_grants(mine, holder, code))
                assert actor.has_perm(code) is expected, f"employee #{holder}, {code}"
                if expected:
                    actor.require(code)
                else:
                    with pytest.raises(Forbidden) as refused:
                        actor.require(code)
                    assert refused.value.code == "permission_denied"
        transaction.set_rollback(True)
    assert_nothing_left_behind()


def test_the_oracle_walks_parent_links() -> None:
    """The oracle's own footing: a subtree is a node and everything below it, nothing beside."""
    parents = (None, 0, 1, 0, None, 4)
    assert subtree(parents, 0) == {0, 1, 2, 3}
    assert subtree(parents, 1) == {1, 2}
    assert subtree(parents, 4) == {4, 5}
    assert subtree(parents, 2) == {2}
