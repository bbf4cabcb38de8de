"""Ticket intake benchmark: tickets created through the HTTP API by concurrent clients against the
real web server on PostgreSQL, beside the raw INSERT rate of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jw_bench \\
        .venv/bin/python -m bench.tickets.run [--tickets N] [--clients C] [--workers W] [--profile]

The database is `<name of DATABASE_URL>_tickets` (jw_bench_tickets under `make bench`), dropped
and made again at every run (`--reuse` keeps it) so every run starts from the same state: the demo
org (jingwei.org.demo) and the shipped flows; a template `bench_12` with a 12-field form (text,
textarea, select, multiselect, phone, email, money, number, date, boolean, region, and a field
shown only for one choice of the select) bound to the after-sales SOP; queues and routing rules
like the demo's (tickets/demo.py), with a rule for `bench_12` third (least-loaded assignment); and
a personal API token of the demo's admin. (The demo's own ticket loader is not used: a benchmark
keeps its setup fixed.)

API: gunicorn started with the product's command line (`jingwei run`'s web part: gthread, 4 threads
a worker, access log on; `--workers` processes, DEBUG off, CONN_MAX_AGE as the environment says —
the product's default is 0, a new database connection per request) on a free port of 127.0.0.1.
After a warm-up, `--clients` threads (stdlib http.client, one keep-alive connection each; httpx is
not installed) POST /api/tickets with distinct contact phones; each request is one ticket: the form
validated, the customer resolved from the phone and e-mail, routed, numbered, the flow started with
the SLA timer of its first task, events, audit. Every response must be 201 and exactly N tickets
must be made.

Raw: the same rows (every column of the tickets just made; new number and progress token, no flow
instance) INSERTed straight into tickets_ticket through psycopg, two ways: `--clients` threads with
a connection each, one INSERT per row in autocommit (a transaction and a commit per row, as the API
makes one transaction per ticket) — the figure the ratio uses; and one connection running
executemany over all rows in one transaction (the floor of writing the rows at all).

CPU (Linux /proc): the machine's busy cores before and during the API phase (other work on the
machine shares the cores with the server, PostgreSQL and the clients); the CPU seconds of the
gunicorn processes and of the whole PostgreSQL server (when it runs on this machine; every database
on it counts) during the phase, per ticket; and the CPU time of a fixed pure-Python loop, to
compare machines.

In this process, after the server has stopped: ticket creations through Django's test client (the
same URL, middleware, token auth and service; no HTTP, one kept connection) give the SQL statements
of one creation, its wall time and its CPU time here and in its PostgreSQL backend. `--profile`
adds the statements themselves and a cProfile (CPU time) of 20 creations, also written to
var/bench-tickets.prof.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import log, setup_django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/jw_bench"
TEMPLATE_KEY = "bench_12"
RULE_NAME = "基准测试：12 字段维修单"
QUEUE_NAME = "基准测试队列"
GOAL_TICKETS_PER_S = 300
GOAL_P99_MS = 150
LOG_FILE = Path(__file__).resolve().parents[2] / "var" / "bench-tickets-gunicorn.log"
PROFILE_FILE = LOG_FILE.with_name("bench-tickets.prof")

# 12 fields: text, textarea, select, multiselect, phone, email, money, number, date, boolean,
# region, and fault_code shown (and required) only when service_type is 维修.
FORM: dict[str, Any] = {
    "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "基准测试维修单",
        "type": "object",
        "properties": {
            "contact_name": {"type": "string", "maxLength": 50},
            "description": {"type": "string", "minLength": 5, "maxLength": 2000},
            "service_type": {"type": "string", "enum": ["安装", "维修", "保养"]},
            "symptoms": {
                "type": "array",
                "items": {"type": "string", "enum": ["不制冷", "不制热", "漏水", "噪音大", "其他"]},
                "uniqueItems": True,
                "maxItems": 5,
            },
            "contact_phone": {"type": "string"},
            "contact_email": {"type": "string", "format": "email"},
            "amount": {"type": "string", "minimum": 0, "maximum": 100000},
            "units": {"type": "integer", "minimum": 1, "maximum": 100},
            "purchase_date": {"type": "string", "format": "date", "formatMaximum": "today"},
            "in_warranty": {"type": "boolean"},
            "service_region": {"type": "array", "minItems": 3, "maxItems": 4},
            "fault_code": {
                "type": "string",
                "maxLength": 20,
                "pattern": "^[A-Z][0-9]{1,3}$",
                "x-visible-when": {"field": "service_type", "op": "eq", "value": "维修"},
            },
        },
        "required": [
            "contact_name",
            "description",
            "service_type",
            "contact_phone",
            "amount",
            "units",
            "service_region",
            "fault_code",
        ],
        "additionalProperties": False,
    },
    "ui": {
        "contact_name": {"label": "联系人", "widget": "text", "order": 10},
        "description": {"label": "问题描述", "widget": "textarea", "order": 20},
        "service_type": {"label": "服务类型", "widget": "select", "order": 30},
        "symptoms": {"label": "故障现象", "widget": "multiselect", "order": 40},
        "contact_phone": {"label": "联系电话", "widget": "phone", "order": 50},
        "contact_email": {"label": "联系邮箱", "widget": "email", "order": 60},
        "amount": {"label": "预估费用", "widget": "money", "order": 70},
        "units": {"label": "设备台数", "widget": "number", "order": 80},
        "purchase_date": {"label": "购买日期", "widget": "date", "order": 90},
        "in_warranty": {"label": "是否在保", "widget": "boolean", "order": 100},
        "service_region": {"label": "上门地区", "widget": "region", "order": 110},
        "fault_code": {
            "label": "故障代码",
            "widget": "text",
            "order": 120,
            "pattern_message": "如 E4、F12",
        },
    },
}


# --- database and setup ----------------------------------------------------------------------


def bench_url(base: str) -> str:
    """`<base name>_tickets` on the same server."""
    parsed = urlparse(base)
    name = parsed.path.lstrip("/") or "jw_bench"
    if not name.endswith("_tickets"):
        name += "_tickets"
    return parsed._replace(path=f"/{name}").geturl()


def fresh_database(url: str, reuse: bool) -> None:
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reuse:
            log(f"reusing database {name}")
            return
        if exists:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log(f"{'re' if exists else ''}created database {name}")


def build() -> dict[str, Any]:
    """The demo tenant (org, shipped flows), the 12-field template, queues and routing rules
    like the demo's with the bench's own rule among them, and an admin's API token."""
    from jingwei.flows.demo import load_shipped_flows
    from jingwei.org.auth import token_issue
    from jingwei.org.demo import load_demo
    from jingwei.org.models import Employee, EmployeeStatus, Region
    from jingwei.org.scope import actor_for
    from jingwei.tickets import services
    from jingwei.tickets.models import RoutingRule, TicketTemplate
    from jingwei.tickets.services.templates import global_template_create

    started = time.perf_counter()
    tenant = load_demo()
    load_shipped_flows(tenant.pk)
    admin = actor_for(Employee.objects.get(tenant=tenant, user__username="admin"))
    regions = {r.name: r for r in Region.objects.filter(tenant=tenant)}
    east, shanghai, pudong = regions["华东"], regions["上海"], regions["浦东"]
    if not TicketTemplate.objects.filter(tenant=tenant, key=TEMPLATE_KEY).exists():
        global_template_create(
            tenant_id=tenant.pk,
            actor=None,
            key=TEMPLATE_KEY,
            name="基准测试维修单（12 字段）",
            form=FORM,
            flow_key="after_sales",
            category="售后",
            default_priority="B",
        )
    if not RoutingRule.objects.filter(tenant=tenant, name=RULE_NAME).exists():
        active = Employee.objects.filter(tenant=tenant, status=EmployeeStatus.ACTIVE).order_by("pk")

        def queue(name: str, region: Any) -> int:
            people = active.filter(region__path__startswith=region.path) if region else active
            members = list(people.values_list("pk", flat=True)[:6])
            region_id = region.pk if region else None
            made = services.queue_save(
                actor=admin, name=name, region_id=region_id, member_ids=members
            )
            return int(made.pk)

        queues = {
            "east": queue("华东售后", east),
            "south": queue("华南售后", regions["华南"]),
            "complaints": queue("客诉专线", None),
            "bench": queue(QUEUE_NAME, east),
        }
        # As the demo's rules (tickets/demo.py), the bench's rule third: two rules fail on every
        # bench ticket, then it holds on template, region, an amount and a choice in the answers.
        rules: list[tuple[str, dict[str, Any], str, dict[str, Any] | None, str]] = [
            (
                "VIP 客户交专属顾问",
                {"field": "customer_level", "op": "eq", "value": "vip"},
                "complaints",
                {"rule": "customer_owner", "fallback": "least_loaded"},
                "A",
            ),
            (
                "S 级投诉",
                {
                    "all": [
                        {"field": "template", "op": "eq", "value": "complaint"},
                        {"field": "priority", "op": "eq", "value": "S"},
                    ]
                },
                "complaints",
                {"rule": "least_loaded"},
                "S",
            ),
            (
                RULE_NAME,
                {
                    "all": [
                        {"field": "template", "op": "eq", "value": TEMPLATE_KEY},
                        {"field": "region", "op": "within", "value": east.pk},
                        {"field": "answers.amount", "op": "gte", "value": 100},
                        {"field": "answers.service_type", "op": "in", "value": ["维修", "安装"]},
                    ]
                },
                "bench",
                {"rule": "least_loaded"},
                "",
            ),
            (
                "华东售后",
                {
                    "all": [
                        {"field": "region", "op": "within", "value": east.pk},
                        {"field": "category", "op": "eq", "value": "售后"},
                    ]
                },
                "east",
                {"rule": "least_loaded"},
                "",
            ),
            (
                "华南售后",
                {"field": "region", "op": "within", "value": regions["华南"].pk},
                "south",
                {"rule": "round_robin"},
                "",
            ),
            (
                "其他投诉",
                {"field": "template", "op": "eq", "value": "complaint"},
                "complaints",
                None,
                "",
            ),
        ]
        for position, (name, conditions, key, assignment, priority) in enumerate(rules, 1):
            services.rule_save(
                actor=admin,
                name=name,
                conditions=conditions,
                queue_id=queues[key],
                assignment=assignment,
                priority=priority,
                position=position * 10,
            )
    rule = RoutingRule.objects.select_related("queue").get(tenant=tenant, name=RULE_NAME)
    token = token_issue(actor=admin, name=f"bench {int(time.time())}").secret
    log(f"setup: demo org, shipped flows, template, queues, rules and token in {_since(started)}")
    return {
        "tenant_id": tenant.pk,
        "token": token,
        "region_id": pudong.pk,
        "region_path": [east.pk, shanghai.pk, pudong.pk],
        "rule_id": rule.pk,
        "rule_position": rule.position,
        "queue_members": rule.queue.memberships.count() if rule.queue else 0,
        "rules": RoutingRule.objects.filter(tenant=tenant, is_active=True).count(),
    }


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.1f}s"


def payload(setup: dict[str, Any], base: int, i: int) -> bytes:
    phone = f"139{base + i:08d}"
    return json.dumps(
        {
            "template": TEMPLATE_KEY,
            "region_id": setup["region_id"],
            "contact_phone": phone,
            "answers": {
                # A name as distinct as the phone: no look-alike proposals between bench customers.
                "contact_name": f"基准客户{base + i}",
                "description": "空调开机后不制冷，室外机不转，断电重启后仍然如此",
                "service_type": "维修",
                "symptoms": ["不制冷", "噪音大"],
                "contact_phone": phone,
                "contact_email": f"c{base + i}@bench.example.com",
                "amount": "350.00",
                "units": 2,
                "purchase_date": "2024-05-18",
                "in_warranty": True,
                "service_region": setup["region_path"],
                "fault_code": f"E{i % 1000}",
            },
        },
        ensure_ascii=False,
    ).encode("utf-8")


# --- the web server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    # As `jingwei run` starts its web part (src/jingwei/core/management/commands/run.py).
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "jingwei.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--access-logfile",
        "-",
        "--graceful-timeout",
        "10",
    ]
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "jingwei.settings")
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    out = LOG_FILE.open("wb")
    proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}); see {LOG_FILE}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn did not answer /healthz in 60s; see {LOG_FILE}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process when it runs on this machine, else None."""
    import psycopg

    with psycopg.connect(url) as conn:
        got = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        stat = Path(f"/proc/{got[0] if got else 0}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pg_cpu_seconds(postmaster: int | None) -> float:
    """CPU of the whole PostgreSQL server (every database): the postmaster with its reaped
    children (backends that ended) and its live children."""
    if postmaster is None:
        return 0.0
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return _cpu_seconds([postmaster, *_children(postmaster)]) + reaped


def calibrate() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine's cores run Python."""
    started = time.process_time()
    sum(i * i for i in range(10**7))
    return time.process_time() - started


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total else 0.0


# --- the clients -----------------------------------------------------------------------------


class Clients:
    """`count` threads, each with one keep-alive connection, taking the bodies in turn."""

    def __init__(self, port: int, token: str, bodies: list[bytes], count: int) -> None:
        self.port, self.bodies, self.count = port, bodies, count
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Connection": "keep-alive",
        }
        self.next = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.ticket_ids: list[int] = []

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= len(self.bodies):
                return None
            self.next += 1
            return self.next - 1

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        latencies, statuses, ids, failures = [], Counter[int](), [], []
        while (i := self._take()) is not None:
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/tickets", self.bodies[i], self.headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"#{i}: {exc!r}")
                conn.close()  # the next request opens a new connection
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
            if response.status == 201:
                ids.append(json.loads(body)["id"])
            elif len(failures) < 5:
                failures.append(f"#{i}: {response.status} {body[:300]!r}")
        conn.close()
        with self.lock:
            self.latencies += latencies
            self.statuses.update(statuses)
            self.ticket_ids += ids
            self.failures += failures

    def run(self) -> float:
        threads = [threading.Thread(target=self._run) for _ in range(self.count)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def api_phase(url: str, setup: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from jingwei.tickets.models import Ticket

    # Phones 139 + 8 digits: a range of its own for this run, so the customers are new.
    base = (int(time.time()) % 900) * 100_000
    warm = [payload(setup, base, i) for i in range(args.warmup)]
    bodies = [payload(setup, base, args.warmup + i) for i in range(args.tickets)]

    idle0 = _machine()
    time.sleep(2)
    background = busy_cores(idle0, _machine())
    log(f"machine: {os.cpu_count()} cores, {background:.2f} cores busy before the run (others)")

    port = free_port()
    started = time.perf_counter()
    proc = start_server(url, port, args.workers)
    conn_max_age = os.environ.get("CONN_MAX_AGE", "0 (product default)")
    log(
        f"gunicorn on 127.0.0.1:{port}: {args.workers} workers x 4 threads, "
        f"CONN_MAX_AGE={conn_max_age}, up in {_since(started)}; log {LOG_FILE}"
    )
    try:
        warmup = Clients(port, setup["token"], warm, args.clients)
        warmup.run()
        if warmup.statuses != Counter({201: len(warm)}):
            raise SystemExit(f"warm-up failed: {dict(warmup.statuses)} {warmup.failures[:3]}")
        first = Ticket.objects.get(pk=warmup.ticket_ids[0])
        if first.routing_rule_id != setup["rule_id"] or first.instance_id is None:
            raise SystemExit(
                f"ticket {first.number} was not routed by the bench rule or has no flow "
                f"(rule {first.routing_rule_id}, instance {first.instance_id})"
            )
        log(f"warm-up: {len(warm)} tickets")

        before = Ticket.objects.filter(tenant_id=setup["tenant_id"]).count()
        server = [proc.pid, *_children(proc.pid)]
        postmaster = postmaster_pid(url)
        pg0 = _pg_cpu_seconds(postmaster)
        cpu0, machine0, client0 = _cpu_seconds(server), _machine(), time.process_time()
        clients = Clients(port, setup["token"], bodies, args.clients)
        seconds = clients.run()
        cpu1, machine1, client1 = _cpu_seconds(server), _machine(), time.process_time()
        pg1 = _pg_cpu_seconds(postmaster)
        made = Ticket.objects.filter(tenant_id=setup["tenant_id"]).count() - before
    finally:
        stop_server(proc)

    n = args.tickets
    ok = clients.statuses.get(201, 0)
    lat_ms = [s * 1000 for s in clients.latencies]
    out = {
        "seconds": seconds,
        "tickets_per_s": n / seconds,
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": max(lat_ms),
        "mean_ms": statistics.fmean(lat_ms),
        "statuses": {str(k): v for k, v in sorted(clients.statuses.items())},
        "failures": clients.failures[:5],
        "made": made,
        "all_201": ok == n and not clients.failures,
        "ticket_ids": sorted(clients.ticket_ids),
        "server_cpu_s": cpu1 - cpu0,
        "pg_cpu_s": pg1 - pg0 if postmaster else None,
        "client_cpu_s": client1 - client0,
        "machine_busy_cores": busy_cores(machine0, machine1),
        "background_busy_cores": background,
    }
    log(
        f"API: {n} tickets by {args.clients} clients in {seconds:.2f}s = "
        f"{out['tickets_per_s']:.1f} tickets/s; latency p50 {out['p50_ms']:.1f} ms, "
        f"p90 {out['p90_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms, max {out['max_ms']:.1f} ms"
    )
    log(
        f"  responses {out['statuses']}, tickets made {made} (expected {n})"
        + (f"; failures: {out['failures']}" if out["failures"] else "")
    )
    log(
        f"  CPU during the phase: gunicorn {out['server_cpu_s']:.1f}s "
        f"({out['server_cpu_s'] / n * 1000:.1f} ms a ticket), "
        + (
            f"PostgreSQL {out['pg_cpu_s']:.1f}s ({out['pg_cpu_s'] / n * 1000:.1f} ms a ticket; "
            "the whole server, other databases too), "
            if out["pg_cpu_s"] is not None
            else "PostgreSQL not on this machine, "
        )
        + f"clients {out['client_cpu_s']:.1f}s; machine {out['machine_busy_cores']:.2f} of "
        f"{os.cpu_count()} cores busy (other sessions' work included)"
    )
    return out


# --- raw INSERT ------------------------------------------------------------------------------


def raw_rows(url: str, ticket_ids: list[int]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every column of the tickets made, each row with a new number and progress token and no
    flow instance (a one-to-one link)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from jingwei.tickets.models import Ticket

    columns = [str(f.column) for f in Ticket._meta.concrete_fields if f.column != "id"]
    with psycopg.connect(url) as conn:
        got = conn.execute(
            f"SELECT {', '.join(columns)} FROM tickets_ticket WHERE id = ANY(%s) ORDER BY id",
            [ticket_ids],
        ).fetchall()
    rows = []
    stamp = f"{int(time.time()) % 100000:05d}"
    for k, row in enumerate(got):
        values = dict(zip(columns, row, strict=True))
        values["number"] = f"RAW{stamp}-{k:06d}"
        values["progress_token"] = secrets.token_urlsafe(24)
        values["instance_id"] = None
        values["answers"] = Jsonb(values["answers"])
        rows.append(tuple(values[c] for c in columns))
    return columns, rows


def raw_phase(url: str, ticket_ids: list[int], clients: int) -> dict[str, Any]:
    import psycopg

    columns, rows = raw_rows(url, ticket_ids)
    insert = (
        f"INSERT INTO tickets_ticket ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )

    def per_row(share: list[tuple[Any, ...]]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            for row in share:
                conn.execute(insert, row)

    shares = [rows[w::clients] for w in range(clients)]
    threads = [threading.Thread(target=per_row, args=(s,)) for s in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_row_s = time.perf_counter() - started
    _delete_raw(url)

    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(insert, rows)
        conn.commit()
        batch_s = time.perf_counter() - started
    _delete_raw(url)

    n = len(rows)
    out = {"rows": n, "per_row_per_s": n / per_row_s, "batch_per_s": n / batch_s}
    log(
        f"raw INSERT of the same {n} rows into tickets_ticket: {clients} threads, one INSERT and "
        f"commit per row (autocommit): {out['per_row_per_s']:,.0f} rows/s; one connection, "
        f"executemany in one transaction: {out['batch_per_s']:,.0f} rows/s"
    )
    return out


def _delete_raw(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM tickets_ticket WHERE number LIKE 'RAW%%'")


# --- one request in this process -------------------------------------------------------------


def in_process(setup: dict[str, Any], profile: bool) -> dict[str, Any]:
    """Ticket creations through Django's test client (same URL, middleware, auth and service as
    the server, no HTTP or gunicorn): SQL statements of one, the time of a few, a profile."""
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {setup['token']}")
    base = 90_000_000 + (int(time.time()) % 100) * 100_000
    counter = iter(range(10**6))

    def post() -> None:
        body = payload(setup, base, next(counter))
        response = client.post("/api/tickets", body, content_type="application/json")
        assert response.status_code == 201, (response.status_code, response.content[:300])

    post()  # warm
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        post()
    # A copy now: the next request's request_started signal empties the connection's log.
    captured = [q["sql"] for q in queries.captured_queries]
    kinds = Counter(sql.split(None, 1)[0].upper() for sql in captured)
    tables = Counter(_table(sql) for sql in captured)
    # The backend serving this process's connection: its CPU is PostgreSQL's share (local server).
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = int(cur.fetchone()[0])
    rounds = 20
    times = []
    cpu0, pg0 = time.process_time(), _cpu_seconds([backend])
    for _ in range(rounds):
        started = time.perf_counter()
        post()
        times.append((time.perf_counter() - started) * 1000)
    cpu1, pg1 = time.process_time(), _cpu_seconds([backend])
    out: dict[str, Any] = {
        "sql_statements": len(captured),
        "sql_kinds": dict(kinds.most_common()),
        "sql_tables": dict(tables.most_common()),
        "median_ms": statistics.median(times),
        "python_cpu_ms": (cpu1 - cpu0) / rounds * 1000,
        # 0 when the server is not on this machine (no /proc entry for the backend).
        "pg_cpu_ms": (pg1 - pg0) / rounds * 1000,
    }
    log(
        f"in this process (test client, one thread, no HTTP, one kept connection), {rounds} "
        f"tickets: median {out['median_ms']:.1f} ms wall; CPU a ticket: Python "
        f"{out['python_cpu_ms']:.1f} ms, its PostgreSQL backend {out['pg_cpu_ms']:.1f} ms"
    )
    log(f"  {out['sql_statements']} SQL statements a ticket {out['sql_kinds']}")
    log(f"  statements by table: {out['sql_tables']}")
    if profile:
        log("  the statements of one ticket creation, in order:")
        for k, sql in enumerate(captured, 1):
            log(f"  {k:3d} {sql[:160]}")
        # CPU time, not wall time: on a busy machine waits would swamp the figures.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(rounds):
            post()
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(30)
        stats.print_callees(r"tickets\.py:\d+\(_create\)")
        stats.dump_stats(PROFILE_FILE)
        log(f"cProfile (CPU time) of {rounds} ticket creations in this process ({PROFILE_FILE}):")
        log(text.getvalue())
    return out


def _table(sql: str) -> str:
    words = sql.replace('"', "").split()
    for marker in ("FROM", "INTO", "UPDATE"):
        if marker in words:
            after = words[words.index(marker) + 1]
            return f"{words[0].upper()} {after}"
    return words[0].upper()


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="keep the database of a past run")
    parser.add_argument("--profile", action="store_true", help="cProfile ticket creation")
    args = parser.parse_args(argv)
    if not 0 < args.tickets + args.warmup < 9_000_000:
        sys.exit("--tickets out of range")

    base = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    url = bench_url(base)
    started = time.perf_counter()
    fresh_database(url, args.reuse)
    setup_django(url)
    log(f"database {urlparse(url).path.lstrip('/')} migrated in {_since(started)}")
    setup = build()
    reference = calibrate()
    log(f"calibration: a fixed pure-Python loop took {reference:.3f}s of CPU")
    log(
        f"routing: {setup['rules']} active rules, the bench rule at position {setup['rule_position']} "
        f"(least loaded of "
        f"{setup['queue_members']} queue members)"
    )

    api = api_phase(url, setup, args)
    raw = raw_phase(url, api["ticket_ids"], args.clients)
    ratio = api["tickets_per_s"] / raw["per_row_per_s"]
    ratio_batch = api["tickets_per_s"] / raw["batch_per_s"]
    log(f"ratio API/raw: {ratio:.4f} (per-row INSERTs), {ratio_batch:.4f} (one batch)")
    local = in_process(setup, args.profile)

    goal = api["tickets_per_s"] >= GOAL_TICKETS_PER_S and api["p99_ms"] < GOAL_P99_MS
    cores = os.cpu_count()
    log(
        f"goal (>= {GOAL_TICKETS_PER_S} tickets/s and p99 < {GOAL_P99_MS} ms on 2 cores): "
        f"{'met' if goal else 'NOT met'} on {cores} cores"
    )
    if not api["all_201"] or api["made"] != args.tickets:
        log("CHECK FAILED: not every request made its ticket")
    print(
        json.dumps(
            {
                "bench": "tickets",
                "tickets": args.tickets,
                "clients": args.clients,
                "workers": args.workers,
                "threads_per_worker": 4,
                "conn_max_age": os.environ.get("CONN_MAX_AGE", "0"),
                "cpu_count": cores,
                "seconds": round(api["seconds"], 3),
                "tickets_per_s": round(api["tickets_per_s"], 1),
                "p50_ms": round(api["p50_ms"], 1),
                "p90_ms": round(api["p90_ms"], 1),
                "p99_ms": round(api["p99_ms"], 1),
                "max_ms": round(api["max_ms"], 1),
                "all_201": api["all_201"],
                "tickets_made": api["made"],
                "raw_insert_rows_per_s": round(raw["per_row_per_s"], 1),
                "raw_batch_rows_per_s": round(raw["batch_per_s"], 1),
                "ratio_api_raw": round(ratio, 4),
                "ratio_api_raw_batch": round(ratio_batch, 4),
                "sql_per_ticket": local["sql_statements"],
                "in_process_ms": round(local["median_ms"], 1),
                "in_process_python_cpu_ms": round(local["python_cpu_ms"], 1),
                "in_process_pg_cpu_ms": round(local["pg_cpu_ms"], 1),
                "server_cpu_ms_per_ticket": round(api["server_cpu_s"] / args.tickets * 1000, 2),
                "pg_cpu_ms_per_ticket": (
                    round(api["pg_cpu_s"] / args.tickets * 1000, 2)
                    if api["pg_cpu_s"] is not None
                    else None
                ),
                "python_ref_cpu_s": round(reference, 3),
                "client_cpu_s": round(api["client_cpu_s"], 2),
                "machine_busy_cores": round(api["machine_busy_cores"], 2),
                "background_busy_cores": round(api["background_busy_cores"], 2),
                "goal_tickets_per_s": GOAL_TICKETS_PER_S,
                "goal_p99_ms": GOAL_P99_MS,
                "goal_met": goal,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
