"""The API contract, endpoint by endpoint, from the table in tests/api_specs.py.

1. Completeness: every operation registered on the API has a row in the table.
2. Anonymous callers get 401 everywhere except the public endpoints.
3. Tenancy: another tenant's object answers exactly like a missing id (404 `not_found`), via a
   path, a body field or a filter, and nothing of the other tenant's changes; reads show only
   the caller's tenant. A public link with an unknown token answers 404.
4. Bad input (malformed JSON, wrong types, missing or unknown fields, oversized bodies, bad query
   parameters) is refused naming the field, and nothing is written.
5. Every error answer is `{"code", "message", "field"}` (plus `errors` for validation) with a
   Chinese message.

The admin persona holds every permission, so a failure here is about tenancy or validation.

Bad-input families (4) are answered by request parsing, before any query: they run on PostgreSQL
(CI's second half) and are skipped on SQLite unless JINGWEI_CONTRACT_FULL=1, which keeps CI within
its time limit. Families where the database matters (tenancy, valid calls, ids beyond the
database's integer range) run on both.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Model
from django.http import HttpResponse
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse

from jingwei.api import api
from jingwei.org.models import Department, Employee, Tenant

from .api_specs import BY_KEY, ENDPOINTS, Endpoint, Side, populate

pytestmark = pytest.mark.django_db

# See the module docstring: request parsing is the same on both databases.
parsing_only = pytest.mark.skipif(
    connection.vendor == "sqlite" and not os.environ.get("JINGWEI_CONTRACT_FULL"),
    reason="bad input is refused before the database: checked on PostgreSQL",
)

MISSING_ID = 987_654_321  # no row of any table has this id in a test database
MISSING_KEY = "no-such-key"  # nor this text key (a file's key, a public link's token)
MISSING_TEXT = "无此名称"
OPENAPI: dict[str, Any] = api.get_openapi_schema()
CJK = re.compile(r"[\u4e00-\u9fff]")
NO_BODY = object()


# --- the table and the API, side by side -------------------------------------------------------


def _registered() -> dict[tuple[str, str], Any]:
    """Every operation on the API, by (method, full path template), with its bound Operation."""
    root = reverse("api:api-root")
    ops: dict[tuple[str, str], Any] = {}
    for bound in api._get_bound_routers():
        for path, view in bound.path_operations.items():
            for op in view.operations:
                full = re.sub("/+", "/", "/".join([root, bound.prefix, path]))
                for method in op.methods:
                    ops[(method.upper(), full)] = op
    return ops


REGISTERED = _registered()


def _openapi_op(ep: Endpoint) -> dict[str, Any]:
    return OPENAPI["paths"].get(ep.path, {}).get(ep.method.lower(), {})


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _nonnull(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a value, with `X | None` reduced to X."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        assert len(options) == 1, f"no single type in {schema}"
        return {**_resolve(options[0]), **{k: v for k, v in schema.items() if k != "anyOf"}}
    return schema


def body_schema(ep: Endpoint) -> dict[str, Any] | None:
    """The JSON body's schema (None for no body, and for a multipart upload: see `form`)."""
    request_body = _openapi_op(ep).get("requestBody")
    if request_body is None or "application/json" not in request_body["content"]:
        return None
    return _resolve(request_body["content"]["application/json"]["schema"])


def query_params(ep: Endpoint) -> dict[str, dict[str, Any]]:
    return {
        p["name"]: _nonnull(p["schema"])
        for p in _openapi_op(ep).get("parameters", [])
        if p["in"] == "query"
    }


def path_params(ep: Endpoint) -> list[str]:
    return re.findall(r"{(\w+)}", ep.path)


def _path_schemas(ep: Endpoint) -> dict[str, dict[str, Any]]:
    return {
        p["name"]: _nonnull(p["schema"])
        for p in _openapi_op(ep).get("parameters", [])
        if p["in"] == "path"
    }


def numeric_ids(ep: Endpoint) -> list[str]:
    """The path parameters that are row ids."""
    return [name for name, s in _path_schemas(ep).items() if s.get("type") == "integer"]


def missing_params(ep: Endpoint, params: dict[str, Any]) -> dict[str, Any]:
    """The same path naming nothing: a missing id for an id, a missing key for a text key (a
    file's key, a public token); a choice such as a file format (`fmt`) stays as it is."""
    schemas, out = _path_schemas(ep), dict(params)
    for name in params:
        if schemas[name].get("type") == "integer":
            out[name] = MISSING_ID
        elif "enum" not in schemas[name]:
            out[name] = MISSING_KEY
    return out


def missing_like(value: Any) -> Any:
    """A body value naming nothing, shaped as `value`: every id in it (a list of ids, the ids of
    an object such as a routing rule's assignment) replaced by a missing id."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return MISSING_ID
    if isinstance(value, list):
        return [missing_like(v) for v in value]
    if isinstance(value, dict):
        return {k: missing_like(v) for k, v in value.items()}
    return value


def success_status(ep: Endpoint) -> int:
    if ep.status is not None:
        return ep.status
    return min(int(c) for c in _openapi_op(ep)["responses"] if 200 <= int(c) < 300)


def page(ep: Endpoint) -> dict[str, Any]:
    """Ask a paginated read for a page large enough to hold every row of a test tenant."""
    return {"limit": settings.NINJA_PAGINATION_MAX_LIMIT} if "limit" in query_params(ep) else {}


# --- bad values, derived from the OpenAPI schema ---------------------------------------------


def bad_body_values(prop: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(case id, value, field suffix) for values a body property must refuse with a 422."""
    p = _nonnull(prop)
    kind = p.get("type")
    out: list[tuple[str, Any, str]] = []
    if "enum" in p:
        out += [("not-in-enum", "不存在的取值", ""), ("number", 1, "")]
    elif kind == "string" and p.get("format") == "date-time":
        out += [
            ("not-a-date", "明天下午", ""),
            ("list", [], ""),
            ("no-timezone", "2031-01-01T09:00:00", ""),
        ]
    elif kind == "string":
        out += [("number", 123, ""), ("list", ["x"], ""), ("object", {"a": 1}, "")]
        out.append(("nul-character", "a\x00b", ""))
        if "maxLength" in p:
            out.append(("too-long", "长" * (p["maxLength"] + 1), ""))
        # Passwords are taken exactly as typed: spaces are a (wrong) password, not a blank.
        if p.get("minLength", 0) >= 1 and p.get("format") != "password":
            out.append(("blank", "   ", ""))
        if "pattern" in p:
            out.append(("pattern", "含 空格!", ""))
    elif kind == "integer":
        out += [("text", "abc", ""), ("fraction", 1.5, ""), ("object", {}, "")]
        if "minimum" in p:
            out.append(("below-minimum", p["minimum"] - 1, ""))
        if "maximum" in p:
            out.append(("above-maximum", p["maximum"] + 1, ""))
    elif kind == "boolean":
        out += [("text", "maybe", ""), ("object", {}, "")]
    elif kind == "object":
        out += [("text", "x", ""), ("list", [1], "")]
    elif kind == "array":
        out += [("text", "x", ""), ("object", {"a": 1}, "")]
        if _nonnull(p["items"]).get("type") == "string":
            out.append(("item-not-text", [1], ".0"))
    else:
        raise AssertionError(f"no bad values known for {p}: teach bad_body_values this type")
    return out


def bad_query_values(p: dict[str, Any]) -> list[tuple[str, str]]:
    kind = p.get("type")
    if "enum" in p:
        return [("not-in-enum", "不存在的取值")]
    if kind == "string" and p.get("format") == "date-time":
        return [("not-a-date", "明天下午")]
    if kind == "string":
        out = [("nul-character", "a\x00b")]
        if "maxLength" in p:
            out.append(("too-long", "长" * (p["maxLength"] + 1)))
        return out
    if kind == "integer":
        out = [("text", "abc"), ("fraction", "1.5")]
        if "minimum" in p:
            out.append(("below-minimum", str(p["minimum"] - 1)))
        if "maximum" in p:
            out.append(("above-maximum", str(p["maximum"] + 1)))
        return out
    if kind == "boolean":
        return [("text", "maybe")]
    raise AssertionError(f"no bad values known for {p}: teach bad_query_values this type")


HUGE_INTEGERS = [
    ("int32-overflow", 2**31),
    ("int64-overflow", 2**63),
    ("int64-underflow", -(2**63) - 1),
]

WITH_BODY = [ep for ep in ENDPOINTS if ep.body is not None]
# A public row's path names a link token, which any caller may use: for those, an unknown token.
WITH_IDS = [ep for ep in ENDPOINTS if ep.target is not None and not ep.public]
WITH_NUMERIC_IDS = [ep for ep in WITH_IDS if numeric_ids(ep)]
PUBLIC_WITH_TOKEN = [ep for ep in ENDPOINTS if ep.target is not None and ep.public]
WRITES = [ep for ep in ENDPOINTS if ep.method != "GET"]
READS = [ep for ep in ENDPOINTS if ep.method == "GET" and ep.target is None and not ep.public]
PRIVATE = [ep for ep in ENDPOINTS if not ep.public]
PUBLIC = [ep for ep in ENDPOINTS if ep.public]

WRONG_TYPES = [
    pytest.param(ep, name, value, name + suffix, id=f"{ep}-{name}-{label}")
    for ep in WITH_BODY
    for name, prop in (body_schema(ep) or {}).get("properties", {}).items()
    for label, value, suffix in bad_body_values(prop)
]
MISSING_FIELDS = [
    pytest.param(ep, name, id=f"{ep}-{name}")
    for ep in WITH_BODY
    for name in (body_schema(ep) or {}).get("required", [])
]
BAD_QUERIES = [
    pytest.param(ep, name, value, id=f"{ep}-{name}-{label}")
    for ep in ENDPOINTS
    for name, p in query_params(ep).items()
    for label, value in bad_query_values(p)
]
INT_FIELDS = [
    pytest.param(ep, where, name, value, id=f"{ep}-{where}-{name}-{label}")
    for ep in ENDPOINTS
    for where, props in (
        ("body", (body_schema(ep) or {}).get("properties", {}) if ep.body else {}),
        ("query", query_params(ep)),
    )
    for name, prop in props.items()
    if _nonnull(prop).get("type") == "integer"
    for label, value in HUGE_INTEGERS
]
BODY_REFS = [pytest.param(ep, name, id=f"{ep}-{name}") for ep in ENDPOINTS for name in ep.body_refs]
QUERY_REFS = [
    pytest.param(ep, name, id=f"{ep}-{name}") for ep in ENDPOINTS for name in ep.query_refs
]


def eps(selection: list[Endpoint]) -> list[Any]:
    return [pytest.param(ep, id=str(ep)) for ep in selection]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def ours(org: Any, admin: Employee) -> Side:
    """The caller's tenant: the admin of tenant A."""
    return Side(org, admin, "甲方", "jiafang")


@pytest.fixture
def theirs(other_org: Any, other_admin: Employee) -> Side:
    """Another tenant, B, whose rows must stay invisible and untouched."""
    return Side(other_org, other_admin, "乙方", "yifang")


@pytest.fixture
def populated(ours: Side, theirs: Side) -> None:
    populate(ours)
    populate(theirs)


def markers(s: Side) -> list[str]:
    """Text that appears only in the other tenant's rows."""
    return [s.label, s.slug, s.tenant.name, s.tenant.slug, s.admin.name]


def models() -> list[type[Model]]:
    jingwei = [m for m in apps.get_models() if m.__module__.startswith("jingwei.")]
    return [*jingwei, get_user_model()]


def row_counts() -> dict[str, int]:
    return {m._meta.label: m._default_manager.count() for m in models()}


def tenant_rows(tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
    """Every row a tenant owns, field by field (and its people's login accounts)."""
    out = {"org.Tenant": list(Tenant.objects.filter(pk=tenant.pk).values())}
    for m in models():
        if any(f.name == "tenant" for f in m._meta.concrete_fields):
            rows = m._default_manager.filter(tenant=tenant).order_by("pk").values()
            out[m._meta.label] = list(rows)
    users = Employee.objects.filter(tenant=tenant).values("user_id")
    out["auth.User"] = list(get_user_model().objects.filter(pk__in=users).order_by("pk").values())
    return out


class Form(dict[str, Any]):
    """Form fields sent as multipart/form-data (an upload) instead of JSON."""


def call(
    client: Client,
    ep: Endpoint,
    params: dict[str, Any] | None = None,
    body: Any = NO_BODY,
    *,
    raw: str | None = None,
    query: dict[str, Any] | None = None,
) -> HttpResponse:
    url = ep.path.format(**(params or {}))
    if query:
        url += "?" + urlencode(query)
    if isinstance(body, Form) and raw is None:
        return client.generic(
            ep.method, url, encode_multipart(BOUNDARY, body), content_type=MULTIPART_CONTENT
        )
    data = raw if raw is not None else ("" if body is NO_BODY else json.dumps(body))
    return client.generic(ep.method, url, data, content_type="application/json")


def assert_error(
    r: HttpResponse, status: int, code: str | None = None, field: Any = ...
) -> dict[str, Any]:
    """The error convention: JSON `{code, message, field}` (+ `errors` for validation), Chinese."""
    assert r.status_code == status, (r.status_code, r.content[:500])
    assert r["Content-Type"].startswith("application/json"), r["Content-Type"]
    data = r.json()
    assert set(data) in ({"code", "message", "field"}, {"code", "message", "field", "errors"}), data
    assert isinstance(data["code"], str) and data["code"], data
    assert isinstance(data["message"], str) and CJK.search(data["message"]), data
    assert data["field"] is None or isinstance(data["field"], str), data
    if "errors" in data:
        assert data["code"] == "validation_error", data
        assert data["errors"], data
        for item in data["errors"]:
            assert set(item) == {"field", "code", "message"}, item
            assert CJK.search(item["message"]), item
    if code is not None:
        assert data["code"] == code, data
    if field is not ...:
        assert data["field"] == field, data
    return data


def assert_refused_writing_nothing(
    client: Client,
    ep: Endpoint,
    params: dict[str, Any],
    status: int,
    code: str,
    field: Any = ...,
    **request: Any,
) -> dict[str, Any]:
    before = row_counts()
    data = assert_error(call(client, ep, params, **request), status, code, field)
    assert row_counts() == before, "a refused request wrote rows"
    return data


def target(ep: Endpoint, side: Side) -> dict[str, Any]:
    return ep.target(side) if ep.target else {}


def body(ep: Endpoint, side: Side) -> Any:
    if ep.form is not None:
        return Form(ep.form(side))
    return ep.body(side) if ep.body else NO_BODY


def listed(r: HttpResponse) -> tuple[str, set[Any]]:
    """The text of a read (for leak checks) and the ids (JSON) or names (CSV) it lists."""
    if r["Content-Type"].startswith("text/csv"):
        text = r.content.decode("utf-8-sig")
        lines = list(csv.reader(io.StringIO(text)))
        return text, {line[1] for line in lines[1:]}
    if not r["Content-Type"].startswith("application/json"):
        return r.content.decode("latin-1"), set()  # a file such as an Excel template
    data = r.json()
    items = data["items"] if isinstance(data, dict) and "items" in data else data
    ids = {i["id"] for i in items if "id" in i} if isinstance(items, list) else set()
    return json.dumps(data, ensure_ascii=False), ids


# --- 1. completeness -------------------------------------------------------------------------


def test_every_registered_operation_has_a_row_in_the_table() -> None:
    missing = sorted(set(REGISTERED) - set(BY_KEY))
    assert not missing, (
        f"endpoints without cross-tenant and bad-input coverage: {missing}; "
        "add a row for each to tests/api_specs.py"
    )


def test_every_row_of_the_table_is_a_registered_operation() -> None:
    assert sorted(set(BY_KEY) - set(REGISTERED)) == []


def test_the_openapi_document_describes_every_operation() -> None:
    documented = {(m.upper(), p) for p, ops in OPENAPI["paths"].items() for m in ops}
    assert set(REGISTERED) <= documented


def test_public_operations_are_exactly_the_rows_marked_public() -> None:
    public = {key for key, op in REGISTERED.items() if not op.auth_callbacks}
    assert public == {ep.key for ep in PUBLIC}


def test_rows_give_a_body_exactly_where_the_operation_takes_one() -> None:
    assert {ep.key for ep in ENDPOINTS if body_schema(ep) is not None} == {
        ep.key for ep in WITH_BODY
    }


def test_rows_give_a_form_exactly_where_the_operation_takes_an_upload() -> None:
    uploads = {
        ep.key
        for ep in ENDPOINTS
        if "multipart/form-data" in _openapi_op(ep).get("requestBody", {}).get("content", {})
    }
    assert uploads == {ep.key for ep in ENDPOINTS if ep.form is not None}


@pytest.mark.parametrize("ep", eps(ENDPOINTS))
def test_row_builds_exactly_the_path_parameters_of_its_route(ep: Endpoint, ours: Side) -> None:
    assert sorted(target(ep, ours)) == sorted(path_params(ep))


# --- 2. who may call -------------------------------------------------------------------------


@pytest.mark.parametrize("ep", eps(PRIVATE))
def test_anonymous_caller_gets_401_and_nothing_happens(
    ep: Endpoint, ours: Side, client: Client
) -> None:
    assert_refused_writing_nothing(
        client, ep, target(ep, ours), 401, "unauthenticated", body=body(ep, ours)
    )


@pytest.mark.parametrize("ep", eps(PUBLIC))
def test_public_endpoint_answers_an_anonymous_caller(
    ep: Endpoint, ours: Side, client: Client
) -> None:
    r = call(client, ep, target(ep, ours), body(ep, ours))
    assert r.status_code == success_status(ep), r.content


@pytest.mark.parametrize("ep", eps(PUBLIC_WITH_TOKEN))
def test_public_endpoint_with_an_unknown_token_answers_404_and_writes_nothing(
    ep: Endpoint, ours: Side, client: Client
) -> None:
    params = missing_params(ep, target(ep, ours))
    assert_refused_writing_nothing(client, ep, params, 404, "not_found", body=body(ep, ours))


@pytest.mark.parametrize("ep", eps(ENDPOINTS))
def test_valid_call_on_own_tenant_succeeds_and_leaves_other_tenant_untouched(
    ep: Endpoint, ours: Side, theirs: Side, populated: None, client_as: Any
) -> None:
    client = client_as(ours.admin)
    params, payload = target(ep, ours), body(ep, ours)
    before = tenant_rows(theirs.tenant)

    r = call(client, ep, params, payload, query=page(ep))

    assert r.status_code == success_status(ep), r.content
    assert tenant_rows(theirs.tenant) == before


# --- 3. tenancy ------------------------------------------------------------------------------


def _assert_not_found_like_missing(
    client: Client, ep: Endpoint, ours: Side, theirs: Side
) -> dict[str, Any]:
    params, payload = target(ep, theirs), body(ep, ours)
    their_rows, counts = tenant_rows(theirs.tenant), row_counts()

    data = assert_error(call(client, ep, params, payload), 404, "not_found")

    missing = call(client, ep, missing_params(ep, params), payload)
    assert (missing.status_code, missing.json()) == (404, data)
    assert tenant_rows(theirs.tenant) == their_rows
    assert row_counts() == counts
    return data


@pytest.mark.parametrize("ep", eps(WITH_IDS))
def test_other_tenants_object_answers_404_exactly_like_a_missing_id(
    ep: Endpoint, ours: Side, theirs: Side, client_as: Any
) -> None:
    _assert_not_found_like_missing(client_as(ours.admin), ep, ours, theirs)


@pytest.mark.parametrize("ep", eps(WITH_IDS))
def test_personal_token_caller_gets_the_same_404_for_other_tenants_object(
    ep: Endpoint, ours: Side, theirs: Side, client_as: Any
) -> None:
    session = client_as(ours.admin)
    issued = session.post("/api/auth/tokens", {"name": "集成测试"}, content_type="application/json")
    assert issued.status_code == 201, issued.content
    bearer = Client(headers={"Authorization": f"Bearer {issued.json()['token']}"})

    by_token = _assert_not_found_like_missing(bearer, ep, ours, theirs)

    assert by_token == _assert_not_found_like_missing(session, ep, ours, theirs)


@pytest.mark.parametrize(
    "ep,value",
    [
        pytest.param(ep, value, id=f"{ep}-{value}")
        for ep in WITH_NUMERIC_IDS
        for value in (0, -1, 2**63, 2**70)
    ],
)
def test_out_of_range_id_answers_like_a_missing_one(
    ep: Endpoint, value: int, ours: Side, client_as: Any
) -> None:
    client = client_as(ours.admin)
    params, payload = target(ep, ours), body(ep, ours)
    missing = call(client, ep, missing_params(ep, params), payload)

    data = assert_refused_writing_nothing(
        client,
        ep,
        {**params, **dict.fromkeys(numeric_ids(ep), value)},
        404,
        "not_found",
        body=payload,
    )

    assert data == missing.json()


@pytest.mark.parametrize("ep", eps(WITH_NUMERIC_IDS))
def test_non_numeric_path_id_is_422_naming_the_parameter(
    ep: Endpoint, ours: Side, client_as: Any
) -> None:
    name = numeric_ids(ep)[0]
    assert_refused_writing_nothing(
        client_as(ours.admin),
        ep,
        {**target(ep, ours), name: "abc"},
        422,
        "validation_error",
        name,
        body=body(ep, ours),
    )


@pytest.mark.parametrize("ep,name", BODY_REFS)
def test_other_tenants_id_in_the_body_is_refused_like_a_missing_one(
    ep: Endpoint, name: str, ours: Side, theirs: Side, client_as: Any
) -> None:
    client = client_as(ours.admin)
    params, payload = target(ep, ours), body(ep, ours)
    their_id = ep.body_refs[name](theirs)
    their_rows, counts = tenant_rows(theirs.tenant), row_counts()

    r = call(client, ep, params, {**payload, name: their_id})

    assert 400 <= r.status_code < 500, r.content
    data = assert_error(r, r.status_code)
    missing = call(client, ep, params, {**payload, name: missing_like(their_id)})
    assert (missing.status_code, missing.json()) == (r.status_code, data)
    assert tenant_rows(theirs.tenant) == their_rows
    assert row_counts() == counts


@pytest.mark.parametrize("ep", eps(READS))
def test_read_shows_exactly_own_tenants_rows_and_nothing_of_the_other(
    ep: Endpoint, ours: Side, theirs: Side, populated: None, client_as: Any
) -> None:
    r = call(client_as(ours.admin), ep, query=page(ep))

    assert r.status_code == 200, r.content
    text, keys = listed(r)
    for marker in markers(theirs):
        assert marker not in text, f"{marker!r} of the other tenant shows in {ep}"
    if ep.rows is not None:
        rows = ep.rows(ours)
        csv_answer = r["Content-Type"].startswith("text/csv")
        expected = {e.name for e in rows} if csv_answer else set(rows.values_list("pk", flat=True))
        assert keys == expected
    if ep.shows is not None:
        data = r.json()
        assert {k: data[k] for k in ep.shows(ours)} == ep.shows(ours)


@pytest.mark.parametrize("ep,name", QUERY_REFS)
def test_filter_pointing_at_other_tenant_answers_like_one_pointing_at_nothing(
    ep: Endpoint, name: str, ours: Side, theirs: Side, populated: None, client_as: Any
) -> None:
    client = client_as(ours.admin)
    theirs_value = ep.query_refs[name](theirs)
    nothing = MISSING_ID if isinstance(theirs_value, int) else MISSING_TEXT
    payload = body(ep, ours)  # an export of what the filters select takes a body too

    pointed = call(client, ep, body=payload, query={**page(ep), name: theirs_value})
    missing = call(client, ep, body=payload, query={**page(ep), name: nothing})
    own = call(client, ep, body=payload, query={**page(ep), name: ep.query_refs[name](ours)})

    assert pointed.status_code == missing.status_code == own.status_code == 200
    assert listed(pointed) == listed(missing)
    text, keys = listed(pointed)
    assert not keys
    for marker in markers(theirs):
        assert marker not in text
    assert listed(own)[1], "the filter finds the caller's own rows (else this test proves nothing)"


def test_idempotency_key_reused_by_another_tenant_never_replays_the_first_answer(
    ours: Side, theirs: Side, client_as: Any
) -> None:
    def post(side: Side) -> HttpResponse:
        return client_as(side.admin).post(
            "/api/org/departments",
            {"name": "同名部门"},
            content_type="application/json",
            headers={"Idempotency-Key": "shared-key-1"},
        )

    first, second = post(ours), post(theirs)

    assert first.status_code == second.status_code == 201, second.content
    assert "Idempotent-Replayed" not in second
    assert Department.objects.get(pk=second.json()["id"]).tenant_id == theirs.tenant.pk
    assert Department.objects.get(pk=first.json()["id"]).tenant_id == ours.tenant.pk


# --- 4. bad input ----------------------------------------------------------------------------


@parsing_only
@pytest.mark.parametrize(
    "ep,raw",
    [
        pytest.param(ep, raw, id=f"{ep}-{label}")
        for ep in WITH_BODY
        for label, raw in (
            ("garbage", "{not json"),
            ("truncated", '{"name": "半截'),
            ("single-quotes", "{'name': 'x'}"),
            ("trailing-comma", '{"name": "x",}'),
        )
    ],
)
def test_malformed_json_is_400_malformed_json_and_writes_nothing(
    ep: Endpoint, raw: str, ours: Side, client_as: Any
) -> None:
    assert_refused_writing_nothing(
        client_as(ours.admin), ep, target(ep, ours), 400, "malformed_json", "body", raw=raw
    )


@parsing_only
@pytest.mark.parametrize(
    "ep,raw",
    [
        pytest.param(ep, raw, id=f"{ep}-{label}")
        for ep in WITH_BODY
        for label, raw in (
            ("empty", ""),
            ("array", "[]"),
            ("string", '"文本"'),
            ("number", "1"),
            ("null", "null"),
        )
    ],
)
def test_body_that_is_not_a_json_object_is_422_on_body_and_writes_nothing(
    ep: Endpoint, raw: str, ours: Side, client_as: Any
) -> None:
    assert_refused_writing_nothing(
        client_as(ours.admin), ep, target(ep, ours), 422, "validation_error", "body", raw=raw
    )


@parsing_only
@pytest.mark.parametrize("ep,name,value,field", WRONG_TYPES)
def test_wrong_type_or_invalid_value_is_422_naming_the_field_and_writes_nothing(
    ep: Endpoint, name: str, value: Any, field: str, ours: Side, client_as: Any
) -> None:
    payload = {**body(ep, ours), name: value}
    assert_refused_writing_nothing(
        client_as(ours.admin), ep, target(ep, ours), 422, "validation_error", field, body=payload
    )


@parsing_only
@pytest.mark.parametrize("ep,name", MISSING_FIELDS)
def test_missing_required_field_is_422_naming_it_and_writes_nothing(
    ep: Endpoint, name: str, ours: Side, client_as: Any
) -> None:
    payload = {k: v for k, v in body(ep, ours).items() if k != name}
    data = assert_refused_writing_nothing(
        client_as(ours.admin), ep, target(ep, ours), 422, "validation_error", name, body=payload
    )
    assert data["errors"][0]["code"] == "missing"


@parsing_only
@pytest.mark.parametrize("ep", eps(WITH_BODY))
def test_unknown_field_is_422_naming_it_and_writes_nothing(
    ep: Endpoint, ours: Side, client_as: Any
) -> None:
    payload = {**body(ep, ours), "tenant_id": 1}
    data = assert_refused_writing_nothing(
        client_as(ours.admin),
        ep,
        target(ep, ours),
        422,
        "validation_error",
        "tenant_id",
        body=payload,
    )
    assert data["errors"][0]["code"] == "extra_forbidden"


@parsing_only
@pytest.mark.parametrize("ep", eps(WRITES))
def test_body_over_the_limit_is_413_body_too_large_and_writes_nothing(
    ep: Endpoint, ours: Side, client_as: Any
) -> None:
    raw = json.dumps({"name": "x" * settings.API_MAX_BODY_BYTES})
    assert_refused_writing_nothing(
        client_as(ours.admin), ep, target(ep, ours), 413, "body_too_large", raw=raw
    )


@parsing_only
@pytest.mark.parametrize("ep,name,value", BAD_QUERIES)
def test_bad_query_parameter_is_422_naming_it_and_writes_nothing(
    ep: Endpoint, name: str, value: str, ours: Side, client_as: Any
) -> None:
    assert_refused_writing_nothing(
        client_as(ours.admin),
        ep,
        target(ep, ours),
        422,
        "validation_error",
        name,
        body=body(ep, ours),
        query={name: value},
    )


@pytest.mark.parametrize("ep,where,name,value", INT_FIELDS)
def test_integer_beyond_the_database_range_never_causes_a_server_error(
    ep: Endpoint, where: str, name: str, value: int, ours: Side, client_as: Any
) -> None:
    client = client_as(ours.admin)
    params, payload = target(ep, ours), body(ep, ours)
    before = row_counts()

    if where == "body":
        r = call(client, ep, params, {**payload, name: value})
    else:
        r = call(client, ep, params, payload, query={**page(ep), name: value})

    assert r.status_code < 500
    if where == "body":
        assert_error(r, r.status_code)  # a body naming no possible row is refused ...
        assert r.status_code >= 400
        assert row_counts() == before  # ... without writing anything
    elif r.status_code >= 400:
        assert_error(r, r.status_code)


# --- 5. the error shape beyond the operations ------------------------------------------------


@pytest.mark.parametrize(
    "header", ["Bearer jw_not_a_token", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"]
)
def test_bad_authorization_header_is_401_with_the_error_shape(header: str, client: Client) -> None:
    assert_error(client.get("/api/auth/me", headers={"Authorization": header}), 401)


def test_unknown_api_path_answers_the_error_shape(admin: Employee, client_as: Any) -> None:
    assert_error(client_as(admin).get("/api/org/no-such-thing"), 404, "not_found")


def test_method_not_allowed_answers_the_error_shape(admin: Employee, client_as: Any) -> None:
    r = client_as(admin).put("/api/org/roles", "{}", content_type="application/json")
    assert_error(r, 405)
