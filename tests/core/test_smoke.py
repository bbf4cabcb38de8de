import pytest


def test_openapi_docs_are_served(client, db):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    assert r.json()["info"]["title"] == "经纬 SCRM API"
    assert client.get("/api/docs").status_code == 200


def test_health(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_sqlite_runs_in_wal_mode(db):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("WAL is a SQLite setting")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_unknown_api_paths_and_methods_answer_in_the_error_shape(client, db):
    missing = client.get("/api/no-such-thing")
    wrong_method = client.put("/api/auth/csrf")

    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": "不存在", "field": None}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


def test_region_time_zone_must_be_a_real_one(admin, client_as):
    r = client_as(admin).post(
        "/api/org/regions",
        {"name": "火星", "timezone": "Mars/Base"},
        content_type="application/json",
    )

    assert r.status_code == 422
    assert r.json()["field"] == "timezone"
