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
