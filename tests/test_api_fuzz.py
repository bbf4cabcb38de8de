"""Property test of the whole API with schemathesis: every operation in the OpenAPI document gets
generated requests (valid and invalid), sent in-process as the tenant admin, and

1. no answer is a 5xx;
2. every 4xx is JSON `{"code", "message", "field"}`;
3. every answer with a documented status conforms to the documented schema and content type, and
   invalid input is refused (schemathesis's own checks).

Requests go through Django's real WSGI handler (all middleware, no network) inside the test's
transaction; each example runs in a savepoint that is rolled back, so a DELETE, a self-`leave`, a
token revoke or a logout in one example cannot take the fixture data (or the caller's token) away
from the next one. The caller authenticates with an API token, never a session.

Bounded for CI: JINGWEI_FUZZ_EXAMPLES (default 25) fuzzed examples per operation plus the
schema-derived boundary cases, with a fixed seed; set JINGWEI_FUZZ_SEED to explore other inputs.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from jingwei.api import api
from jingwei.audit.models import AuditEvent
from jingwei.notify.models import Notification
from jingwei.notify.services import notification_send
from jingwei.org.auth import token_issue
from jingwei.org.models import (
    ApiToken,
    Department,
    Employee,
    Region,
    Role,
    RoleAssignment,
)
from jingwei.org.scope import actor_for

from .conftest import Org
from .factories import EmployeeFactory, grant, make_role

MAX_EXAMPLES = int(os.environ.get("JINGWEI_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("JINGWEI_FUZZ_SEED", "20240611"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            # Only the success statuses are documented, so any 4xx would "not conform".
            "status_code_conformance": {"enabled": False},
            # A valid body naming a missing id is rightly a 404, not a 2xx.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
SCHEMA = schemathesis.openapi.from_dict(api.get_openapi_schema(), config=CONFIG)


# --- the application, in-process ---------------------------------------------------------------


class InProcessApp:
    """Django's WSGI handler without the per-request connection housekeeping (which would close
    the test's connection mid-transaction), recording the traceback of any uncaught exception."""

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


@pytest.fixture(scope="module")
def wsgi_app() -> InProcessApp:
    return InProcessApp()


# --- the data the generated ids may hit ---------------------------------------------------------


@dataclass
class World:
    headers: dict[str, str]
    pools: dict[str, list[int]] = field(default_factory=dict)


def _populate(org: Org, admin: Employee) -> None:
    """A little of everything in a tenant, so that ids drawn from the pools name real rows."""
    actor = actor_for(admin)
    role = make_role(org.tenant, f"角色{admin.pk}", ["org.view"])
    staff = EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.shanghai)
    RoleAssignment.objects.create(tenant=org.tenant, employee=staff, role=role, scope="self")
    EmployeeFactory(
        tenant=org.tenant, department=org.south_dept, frozen_at="2024-01-01T00:00:00Z"
    )
    EmployeeFactory(tenant=org.tenant, status="left")
    grant(staff, ["customer.view"], "region", region=org.east)
    notification_send(
        tenant_id=org.tenant.pk, recipient_id=admin.pk, kind="fuzz", title="通知"
    )
    token_issue(actor=actor, name="旧令牌")


@pytest.fixture
def world(org: Org, other_org: Org, admin: Employee, other_admin: Employee) -> World:
    _populate(org, admin)
    _populate(other_org, other_admin)
    secret = token_issue(actor=actor_for(admin), name="fuzz").secret
    ids = {
        "department": Department,
        "region": Region,
        "employee": Employee,
        "role": Role,
        "assignment": RoleAssignment,
        "token": ApiToken,
        "event": AuditEvent,
        "notification": Notification,
    }
    pools = {
        name: sorted(model.objects.values_list("pk", flat=True)) for name, model in ids.items()
    }
    return World(headers={"Authorization": f"Bearer {secret}"}, pools=pools)


def _pool_for(name: str, path: str) -> str | None:
    """Which kind of row an id parameter or field names."""
    if name in ("node_id", "parent_id"):
        return "department" if "/departments" in path else "region"
    if name == "manager_id":
        return "employee"
    if name.endswith("_id"):
        return name.removesuffix("_id")
    return None


def _steer(case: schemathesis.Case, world: World) -> None:
    """Point most generated ids of a valid case at real rows (of either tenant): random integers
    almost never name a row, and the interesting paths (update, move, delete) need one. The choice
    is a function of the generated value, so Hypothesis still shrinks it."""
    path = case.operation.path

    def steer(container: Any) -> None:
        if not isinstance(container, dict):
            return
        for name, value in list(container.items()):
            kind = _pool_for(name, path)
            pool = world.pools.get(kind or "")
            if pool and isinstance(value, int) and not isinstance(value, bool) and value % 4:
                container[name] = pool[value % len(pool)]

    steer(case.path_parameters)
    steer(case.query)
    steer(case.body)


# --- the property ------------------------------------------------------------------------------


def _assert_error_shape(response: schemathesis.Response, label: str) -> None:
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
        f"{label}: {response.status_code} is not JSON: {response.text[:300]!r}"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), f"{label}: error body is not an object: {body!r}"
    missing = {"code", "message", "field"} - set(body)
    assert not missing, f"{label}: error body lacks {sorted(missing)}: {body!r}"
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["field"] is None or isinstance(body["field"], str), body


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@SCHEMA.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_fuzz(case: schemathesis.Case, world: World, wsgi_app: InProcessApp) -> None:
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        _steer(case, world)
    label = f"{case.method} {case.formatted_path}"
    wsgi_app.tracebacks.clear()
    cache.clear()
    # A savepoint per example, rolled back: nothing one example does is seen by the next. Marked
    # like the test case's own atomic so that the services' durable blocks may nest inside it.
    savepoint = transaction.atomic()
    savepoint._from_testcase = True  # type: ignore[attr-defined]
    try:
        with savepoint:
            response = case.call(app=wsgi_app, headers=world.headers)
            raise _Rollback
    except _Rollback:
        pass
    assert response.status_code < 500, (
        f"{label} → {response.status_code}\n{case.as_curl_command(headers=world.headers)}\n"
        + "".join(wsgi_app.tracebacks)
    )
    if 400 <= response.status_code < 500:
        _assert_error_shape(response, label)
    case.validate_response(response, headers=world.headers, transport_kwargs={"app": wsgi_app})
    sys.stdout.flush()
