"""Property test of the whole API with schemathesis: for every operation in the OpenAPI document
the app serves, generated requests (valid and invalid, Hypothesis-driven) are sent in-process as
the tenant admin, and

1. no answer is a 5xx;
2. every 4xx is JSON `{"code", "message", "field"}`;
3. answers conform to the document where schemathesis can tell (schema and content type of the
   documented statuses, headers, invalid input refused, auth enforced).

Requests go through Django's real WSGI handler (every middleware, no network) inside the test's
transaction. Each example runs in a savepoint that is rolled back, so a DELETE, a self-`leave`, a
token revoke or a logout in one example cannot take the fixture data (or the caller's credentials)
from the next. Two passes: every operation as an integration calls it (an API token), and every
write again as the console calls it (session cookie and CSRF token; minting a token is only
possible that way, and the CSRF check reads the body).

Valid generated ids are mostly pointed at real rows of both tenants (`_steer`): random integers
almost never name a row, and updates, moves and deletes only do something on one.

On SQLite only the regression tests at the end run, unless JINGWEI_FUZZ_SQLITE=1: generated
requests exercise request parsing and the services the same way on both databases, and fuzzing
once (on PostgreSQL, CI's second half) keeps CI within its time limit.

Bounded for CI: JINGWEI_FUZZ_EXAMPLES (default 6; 25 for a deeper local run) fuzzed examples per operation plus the
examples and boundary cases the document implies, from a fixed seed; JINGWEI_FUZZ_SEED picks
another for exploring.

The regression tests at the end pin the defects the fuzzing found (far UTC offsets, multipart
bodies on console writes, booleans as integers, numbers as dates), all fixed.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, connection, transaction
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from jingwei.audit.models import AuditEvent
from jingwei.notify.models import Notification
from jingwei.notify.services import notification_send
from jingwei.org.auth import token_issue
from jingwei.org.models import ApiToken, Department, Employee, Region, Role, RoleAssignment
from jingwei.org.scope import actor_for
from jingwei.tickets.models import Opportunity, Queue, RoutingRule, Ticket, TicketTemplate

from . import api_specs as specs
from .conftest import Org
from .factories import EmployeeFactory, grant, make_role

# 6 keeps CI within its time limit now that ~200 operations are fuzzed twice; explore with more.
MAX_EXAMPLES = int(os.environ.get("JINGWEI_FUZZ_EXAMPLES", "6"))
SEED = int(os.environ.get("JINGWEI_FUZZ_SEED", "20240611"))
ON_POSTGRES = connection.vendor == "postgresql"
fuzzed_here = pytest.mark.skipif(
    not ON_POSTGRES and not os.environ.get("JINGWEI_FUZZ_SQLITE"),
    reason="fuzzed on PostgreSQL (JINGWEI_FUZZ_SQLITE=1 fuzzes SQLite too)",
)


def _config(max_examples: int, **checks: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Credentials are added to every request (below), so the Authorization header is
            # neither generated nor "negated" by leaving it out.
            "generation": {
                "max-examples": max_examples,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                # Only the success statuses are documented, so every 4xx would "not conform".
                "status_code_conformance": {"enabled": False},
                # A valid body naming a missing id is rightly a 404, not a 2xx.
                "positive_data_acceptance": {"enabled": False},
                **{name: {"enabled": on} for name, on in checks.items()},
            },
        }
    )


# --- the application, in-process ---------------------------------------------------------------


class InProcessApp:
    """Django's WSGI handler without the per-request connection housekeeping (which would close
    the test's connection mid-transaction, as Django's test client also avoids), recording the
    traceback of every uncaught exception."""

    def __init__(self) -> None:
        self.handler = WSGIHandler()
        self.tracebacks: list[str] = []

    def _record(self, sender: Any, **kwargs: Any) -> None:
        self.tracebacks.append(traceback.format_exc())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        got_request_exception.connect(self._record)
        try:
            response = self.handler(environ, start_response)
            try:
                body = b"".join(response)
            finally:
                response.close()
        finally:
            got_request_exception.disconnect(self._record)
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return [body]


APP = InProcessApp()
# The document the app serves, fetched through the app itself. Called with an API token.
SCHEMA = schemathesis.openapi.from_wsgi("/api/openapi.json", APP, config=_config(MAX_EXAMPLES))
# The writes again, called as the console does: session cookie and CSRF token; fewer fuzzed
# examples, as what differs is the authentication. (A session is not the documented bearer
# scheme, so schemathesis would take every 2xx for "accepted without authentication".)
CONSOLE_SCHEMA = schemathesis.openapi.from_wsgi(
    "/api/openapi.json", APP, config=_config(max(MAX_EXAMPLES // 2, 1), ignored_auth=False)
).include(method=["POST", "PUT", "PATCH", "DELETE"])


# --- the rows generated ids may name -----------------------------------------------------------


@dataclass
class World:
    headers: dict[str, str]  # the admin's API token
    session_headers: dict[str, str]  # the CSRF token that goes with…
    session_cookies: dict[str, str]  # …the admin's session and CSRF cookies
    pools: dict[str, list[int]] = field(default_factory=dict)

    def credentials(self, console: bool) -> dict[str, Any]:
        if console:
            return {"headers": self.session_headers, "cookies": self.session_cookies}
        return {"headers": self.headers}


def _populate(org: Org, admin: Employee) -> None:
    """A little of everything in a tenant: a role and grants, an active, a frozen and a departed
    employee, a notification, an older token and the audit events all this writes."""
    role = make_role(org.tenant, f"角色{admin.pk}", ["org.view"])
    staff = EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.shanghai)
    RoleAssignment.objects.create(tenant=org.tenant, employee=staff, role=role, scope="self")
    grant(staff, ["customer.view"], "region", region=org.east)
    EmployeeFactory(
        tenant=org.tenant, department=org.south_dept, frozen_at=timezone.now(), frozen_reason="锁定"
    )
    EmployeeFactory(tenant=org.tenant, status="left", left_at=timezone.now())
    notification_send(tenant_id=org.tenant.pk, recipient_ids=[admin.pk], kind="fuzz", title="通知")
    token_issue(actor=actor_for(admin), name="旧令牌")


POOLS: dict[str, type[Any]] = {
    "department": Department,
    "region": Region,
    "employee": Employee,
    "role": Role,
    "assignment": RoleAssignment,
    "token": ApiToken,
    "event": AuditEvent,
    "notification": Notification,
    "ticket": Ticket,
    "template": TicketTemplate,
    "queue": Queue,
    "routing_rule": RoutingRule,
    "opportunity": Opportunity,
}


def _populate_tickets(org: Org, admin: Employee, label: str, slug: str) -> None:
    """Tickets to act on: a routed-to queue and its rule, a regional override, an open public
    form, and two tickets (one owned and linked to an opportunity)."""
    side = specs.Side(org, admin, label, slug)
    specs.new_routing_rule(side)
    specs.new_override(side)
    specs.new_public_template(side)
    specs.new_ticket(side, opportunity=specs.new_opportunity(side), owner=admin)
    specs.new_ticket(side)


@pytest.fixture
def world(org: Org, other_org: Org, admin: Employee, other_admin: Employee) -> World:
    _populate(org, admin)
    _populate(other_org, other_admin)
    _populate_tickets(org, admin, "甲方", "jiafang")
    _populate_tickets(other_org, other_admin, "乙方", "yifang")
    secret = token_issue(actor=actor_for(admin), name="fuzz").secret
    console = Client()
    console.force_login(admin.user)
    csrf = get_random_string(32)
    pools = {
        name: sorted(model.objects.values_list("pk", flat=True)) for name, model in POOLS.items()
    }
    return World(
        headers={"Authorization": f"Bearer {secret}"},
        session_headers={"X-CSRFToken": csrf},
        session_cookies={
            django_settings.SESSION_COOKIE_NAME: console.cookies[
                django_settings.SESSION_COOKIE_NAME
            ].value,
            django_settings.CSRF_COOKIE_NAME: csrf,
        },
        pools=pools,
    )


def _pool_for(name: str, path: str) -> str | None:
    """Which kind of row an id parameter or field names."""
    if name in ("node_id", "parent_id"):
        return "department" if "/departments" in path else "region"
    if name in ("manager_id", "owner_id"):
        return "employee"
    if name == "rule_id":
        return "routing_rule" if "/routing-rules" in path else None
    if name.endswith("_id"):
        return name.removesuffix("_id")
    return None


def _steer(case: schemathesis.Case, world: World) -> None:
    """Point three in four generated ids of a valid case at real rows (of either tenant). The row
    is a function of the generated value, so Hypothesis still shrinks it."""
    path = case.operation.path

    def steer(container: Any) -> None:
        if not isinstance(container, dict):
            return
        for name, value in list(container.items()):
            pool = world.pools.get(_pool_for(name, path) or "")
            if pool and isinstance(value, int) and not isinstance(value, bool) and value % 4:
                container[name] = pool[value % len(pool)]

    steer(case.path_parameters)
    steer(case.query)
    steer(case.body)


# --- reading the document ----------------------------------------------------------------------


def _resolve(schema: Any) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = SCHEMA.raw_schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema if isinstance(schema, dict) else {}


def _keywords(schema: Any, key: str) -> set[str]:
    """Every `type` (or `format`) a schema allows, through anyOf/oneOf/allOf."""
    schema = _resolve(schema)
    found: set[str] = set()
    value = schema.get(key)
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, list):
        found.update(value)
    for branch in (*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())):
        found |= _keywords(branch, key)
    return found


def _inputs(case: schemathesis.Case) -> list[tuple[Any, dict[str, Any]]]:
    """(value sent, its schema) for every query parameter and top-level body field of the case."""
    op = SCHEMA.raw_schema["paths"][case.operation.path].get(case.method.lower(), {})
    pairs: list[tuple[Any, dict[str, Any]]] = []
    query = case.query if isinstance(case.query, dict) else {}
    for param in op.get("parameters", []):
        if param["in"] == "query" and param["name"] in query:
            pairs.append((query[param["name"]], param.get("schema", {})))
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    properties = _resolve(media.get("schema")).get("properties", {})
    if isinstance(case.body, dict):
        pairs += [(v, properties[k]) for k, v in case.body.items() if k in properties]
    return pairs


def _datetimes(case: schemathesis.Case) -> list[Any]:
    return [v for v, schema in _inputs(case) if "date-time" in _keywords(schema, "format")]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _utc_offset(value: Any) -> timedelta | None:
    try:
        return datetime.fromisoformat(str(value)).utcoffset()
    except ValueError:
        return None


# --- the property ------------------------------------------------------------------------------


def _assert_error_shape(response: schemathesis.Response, label: str) -> None:
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{label}: {response.status_code} is not JSON ({content_type}): {response.text[:300]!r}"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), f"{label}: error body is not an object: {body!r}"
    missing = {"code", "message", "field"} - set(body)
    assert not missing, f"{label}: error body lacks {sorted(missing)}: {body!r}"
    assert isinstance(body["code"], str) and body["code"], f"{label}: {body!r}"
    assert isinstance(body["message"], str) and body["message"], f"{label}: {body!r}"
    assert body["field"] is None or isinstance(body["field"], str), f"{label}: {body!r}"


class _Rollback(Exception):
    pass


def _check(case: schemathesis.Case, world: World, console: bool) -> None:
    label = f"{case.method} {case.formatted_path}" + (" (console)" if console else "")
    credentials = world.credentials(console)
    response = case.call(**credentials)
    assert response.status_code < 500, (
        f"{label} → {response.status_code}\n{case.as_curl_command(headers=credentials['headers'])}\n"
        + "".join(APP.tracebacks)
    )
    if 400 <= response.status_code < 500:
        curl = case.as_curl_command(headers=credentials["headers"])
        _assert_error_shape(response, f"{label}\n{curl}\n")
    # Schemathesis's checks; some send more requests (still inside the savepoint).
    case.validate_response(response, headers=credentials["headers"])


def _run(case: schemathesis.Case, world: World, console: bool) -> None:
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        _steer(case, world)
    APP.tracebacks.clear()
    cache.clear()  # login throttling and idempotency keys live there
    # A savepoint per example, always rolled back. Marked like the test case's own atomic block
    # so that the services' durable blocks may open inside it.
    savepoint = transaction.atomic()
    savepoint._from_testcase = True  # type: ignore[attr-defined]
    try:
        with savepoint:
            _check(case, world, console)
            raise _Rollback
    except _Rollback:
        pass


FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@fuzzed_here
@pytest.mark.django_db
@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_api_fuzz(case: schemathesis.Case, world: World) -> None:
    """Every operation, as an integration calls it: `Authorization: Bearer <token>`."""
    _run(case, world, console=False)


@fuzzed_here
@pytest.mark.django_db
@CONSOLE_SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_api_fuzz_console(case: schemathesis.Case, world: World) -> None:
    """Every write, as the console calls it: session cookie plus X-CSRFToken. (Minting a token
    is only possible this way.)"""
    _run(case, world, console=True)


# --- the failures found, one reproduction each -------------------------------------------------

FAR_OFFSET = "2030-01-01T00:00:00+16:00"  # valid ISO 8601 and for Python; PostgreSQL: ±15:59


@pytest.fixture
def api_client(world: World) -> Client:
    return Client(headers=world.headers, raise_request_exception=False)


@pytest.fixture
def console_client(admin: Employee) -> Client:
    """The admin's session with the CSRF cookie and header, and the check enforced (as in prod)."""
    csrf = get_random_string(32)
    client = Client(
        enforce_csrf_checks=True, headers={"X-CSRFToken": csrf}, raise_request_exception=False
    )
    client.force_login(admin.user)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = csrf
    return client


def _assignment_body(org: Org) -> dict[str, Any]:
    employee = EmployeeFactory(tenant=org.tenant, department=org.hq)
    role = make_role(org.tenant, "临时角色", ["org.view"])
    return {"employee_id": employee.pk, "role_id": role.pk, "scope": "self"}


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["token expires_at", "audit since", "assignment expires_at"])
def test_far_utc_offset_is_not_a_server_error(
    api_client: Client, console_client: Client, org: Org, where: str
) -> None:
    if where == "token expires_at":
        response = console_client.post(
            "/api/auth/tokens", {"name": "远", "expires_at": FAR_OFFSET}, "application/json"
        )
    elif where == "audit since":
        response = api_client.get(f"/api/audit/events?since={quote(FAR_OFFSET)}")
    else:
        body = {**_assignment_body(org), "expires_at": FAR_OFFSET}
        response = api_client.post("/api/org/assignments", body, "application/json")
    assert response.status_code < 500


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/org/departments", "/api/org/regions"])
def test_integer_field_refuses_boolean(api_client: Client, path: str) -> None:
    response = api_client.post(path, {"name": "布尔", "sort": False}, "application/json")
    assert response.status_code == 422
    assert response.json()["field"] == "sort"


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["until=0.5", "since=1700000000"])
def test_datetime_refuses_number(api_client: Client, query: str) -> None:
    response = api_client.get(f"/api/audit/events?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == query.split("=")[0]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/org/departments", "/api/auth/tokens"])
def test_console_write_with_unparsable_multipart_answers_json(
    console_client: Client, path: str
) -> None:
    response = console_client.post(path, b'{"name": "x"}', "multipart/form-data")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert {"code", "message", "field"} <= set(response.json())


@pytest.mark.django_db
def test_nul_anywhere_in_a_json_payload_is_refused_naming_the_field(api_client: Client) -> None:
    # PostgreSQL cannot keep \u0000 in jsonb, not even as an object key (found by fuzzing).
    for payload in ({"\x00": None}, {"a": ["x\x00"]}, {"a": {"b\x00": 1}}):
        r = api_client.post(
            "/api/notify/events",
            {"name": "order.paid", "key": "k1", "payload": payload},
            content_type="application/json",
        )
        assert r.status_code == 422, r.content
        assert r.json()["field"] == "payload"
