"""Notification engine benchmark: events fanned out to 3 recipients on 2 channels each (in-app and
a signed webhook to a local receiver) by several worker processes on PostgreSQL; deliveries per
second, and every duplicate the inbox or the receiver saw.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jw_bench \\
        .venv/bin/python -m bench.notify.run [--events N] [--workers W] [--kill-at F] [--profile]

`--events` defaults to BENCH_NOTIFY_EVENTS or 100,000 (2,000 is a quick run). The database is
`<name of DATABASE_URL>_notify` (jw_bench_notify under `make bench`), dropped and made again at
every run so every run starts from empty tables (a leftover pending delivery of another run would
be claimed by the workers too).

Set-up: a tenant with quiet hours off (the default 22:00–08:00 would hold every message of a run
at night), 3 employees, a message template, one rule (event bench.event → the 3 employees,
{"info": ["inapp", "webhook"]}) and the webhook channel pointed at simulators.WebhookReceiver,
served by a thread of this process on 127.0.0.1 (it checks every signature and counts a delivery
id seen twice). Events: the first `--sample` through event_publish one by one in autocommit (the
public path; its rate is reported), the rest INSERTed in one statement as the same rows
(status new, distinct created_at in order, same payload shape).

Fan-out: `--workers` OS processes (`python -m bench.notify.run --worker fanout`, each its own
django.setup() and connection) loop events_fan_out until it finds nothing. Delivery: as many
processes loop delivery.deliver_due (the runner `jingwei run` registers) until no delivery is
pending or sending. The workers start, connect, then wait for the word to go, so start-up is not
timed. With `--kill-at F` (default 0.4; 0 turns it off) one delivery worker is killed with SIGKILL
once the receiver has F of the webhooks, and a new one is started at once: what the killed one had
claimed waits for its lease (NOTIFY_LEASE_SECONDS, `--lease`, 5 s here) and is taken again.

Checks: deliveries written = events x 6; every one sent; inbox rows beyond one per in-app delivery
(duplicates a person would see); webhook ids the receiver got twice (it answers 200 and keeps the
first: a receiver that dedupes as docs say shows nothing twice); webhooks sent but not received;
deliveries claimed more than once (attempts > 1: re-sent after the kill or after a lease ran out).

Where time goes, in this process after the run: SQL statements and milliseconds of one
event_publish, one event's fan-out, one claim and one delivery of each channel (50 more events);
EXPLAIN ANALYZE of the claim query with every delivery pending; CPU seconds of the workers, of
their PostgreSQL backends (autovacuum and the WAL writer not counted), of this process (the
receiver), and of the whole PostgreSQL server (which other databases on it share). `--profile` also runs the first worker
of each phase under cProfile in CPU time (var/bench-notify-{fanout,deliver}.prof) and prints the
top entries.
`--synchronous-commit off` sets that on the bench database (an experiment: how much of the time
is waiting for the WAL flush at each commit; the product runs with PostgreSQL's default, on).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import log, setup_django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/jw_bench"
ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
EVENT = "bench.event"
RECIPIENTS = 3
CHANNELS = ("inapp", "webhook")
SECRET = "jingwei-bench-webhook-secret"
PROBE_EVENTS = 50


# --- database and set-up -----------------------------------------------------------------------


def bench_url(base: str) -> str:
    """`<base name>_notify` on the same server."""
    parsed = urlparse(base)
    name = parsed.path.lstrip("/") or "jw_bench"
    if not name.endswith("_notify"):
        name += "_notify"
    return parsed._replace(path=f"/{name}").geturl()


def fresh_database(url: str, synchronous_commit: str) -> None:
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log(f"{'re' if exists else ''}created database {name}")
        if synchronous_commit != "on":
            # An experiment, not the product's setting: commits stop waiting for the WAL flush.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                    sql.Identifier(name), sql.Literal(synchronous_commit)
                )
            )
            log(f"synchronous_commit = {synchronous_commit} for {name} (experiment)")


def build(hook_url: str) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from jingwei.notify.models import ChannelConfig, MessageTemplate, NotifySettings, Rule
    from jingwei.org.models import Employee, Tenant

    stamp = f"{int(time.time() * 1000):x}"
    tenant = Tenant.objects.create(name=f"通知基准 {stamp}", slug=f"bench-notify-{stamp}")
    # Quiet hours off: a run at night would otherwise hold every message until 08:00.
    NotifySettings.objects.create(tenant=tenant, quiet_enabled=False)
    password = make_password(None)
    people = []
    for n, name in enumerate(["王值班", "陈主管", "赵经理"][:RECIPIENTS], 1):
        user = get_user_model().objects.create(username=f"{stamp}-{n}", password=password)
        people.append(
            Employee.objects.create(
                tenant=tenant,
                user=user,
                employee_no=f"B{n:04d}",
                name=name,
                email=f"b{n}@bench.example.com",
                phone=f"1390000{n:04d}",
            )
        )
    template = MessageTemplate.objects.create(
        tenant=tenant,
        key="bench",
        name="基准提醒",
        title="工单 {{ ticket.number }} 待处理",
        text="客户 {{ customer.name }} 的工单已 {{ minutes }} 分钟未处理，请尽快跟进。",
        html="<p>客户 <b>{{ customer.name }}</b> 的工单 {{ ticket.number }} 待处理。</p>",
    )
    Rule.objects.create(
        tenant=tenant,
        name="基准规则",
        event=EVENT,
        recipients=[{"kind": "employee", "employee_id": p.pk} for p in people],
        channels={"info": list(CHANNELS)},
        template=template,
    )
    ChannelConfig.objects.create(
        tenant=tenant,
        channel="webhook",
        settings={"url": hook_url, "secret": SECRET, "timeout_seconds": 10},
    )
    return {"tenant_id": tenant.pk, "people": [p.pk for p in people]}


def payload(i: int) -> dict[str, Any]:
    # The same shape as the jsonb_build_object of bulk_events.
    return {
        "ticket": {"number": f"GD-BENCH-{i:07d}", "id": i},
        "customer": {"name": f"基准客户{i}"},
        "minutes": 30,
    }


def publish_sample(tenant_id: int, count: int) -> float:
    """event_publish one at a time, each in autocommit as a caller outside a transaction."""
    from jingwei.notify.services import event_publish

    started = time.perf_counter()
    for i in range(count):
        event_publish(tenant_id=tenant_id, name=EVENT, payload=payload(i), key=f"bench-{i:07d}")
    return time.perf_counter() - started


def bulk_events(tenant_id: int, first: int, count: int) -> float:
    """The rest as the same rows in one INSERT … SELECT (created_at distinct and in order, as
    events published one after another have)."""
    from django.db import connection

    from jingwei.notify.models import Event

    table = Event._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {table}
                    (tenant_id, name, key, severity, payload, status, created_at, processed_at)
                SELECT %s, %s, 'bench-' || lpad(g::text, 7, '0'), 'info',
                       jsonb_build_object(
                           'ticket', jsonb_build_object(
                               'number', 'GD-BENCH-' || lpad(g::text, 7, '0'), 'id', g),
                           'customer', jsonb_build_object('name', '基准客户' || g),
                           'minutes', 30),
                       'new', now() + g * interval '1 microsecond', NULL
                FROM generate_series(%s, %s) AS g""",
            [tenant_id, EVENT, first, first + count - 1],
        )
        cur.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


# --- CPU (Linux /proc) -------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def postmaster_pid() -> int | None:
    """The PostgreSQL server's main process when it runs on this machine, else None."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    fields = _stat(backend)
    return int(fields[1]) if fields else None


def pg_cpu_seconds(postmaster: int | None) -> float:
    """The whole server (every database): postmaster, live children, and reaped ones."""
    if postmaster is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat(postmaster)
    if fields is None:
        return 0.0
    total = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            child = _stat(int(entry))
            if child is not None and int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    return total / ticks


def backend_cpu(pid: int | None) -> float:
    """CPU seconds so far of one PostgreSQL backend (when the server runs on this machine)."""
    fields = _stat(pid) if pid else None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def machine() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- workers -----------------------------------------------------------------------------------


def worker(mode: str, profile_out: str, wait: bool) -> None:
    """One worker process: set up, say ready, wait for go, work until nothing is left."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jingwei.settings")
    import django

    django.setup()
    from django.db import connection

    from jingwei.notify.delivery import deliver_due
    from jingwei.notify.models import Delivery, DeliveryStatus
    from jingwei.notify.services import events_fan_out

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    print("ready", flush=True)
    if wait:
        sys.stdin.readline()
    # CPU time, not wall: on a busy machine the wall-clock profile is mostly waiting for a core.
    profiler = cProfile.Profile(time.process_time) if profile_out else None
    cpu, started, pg = time.process_time(), time.perf_counter(), backend_cpu(backend)
    taken = idle = 0
    if profiler is not None:
        profiler.enable()
    if mode == "fanout":
        while done := events_fan_out():
            taken += done
    else:
        open_ = Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING])
        while True:
            done = deliver_due()
            taken += done
            if done:
                continue
            # Nothing due now, but some may still come due: a killed worker's lease running
            # out, or a retry after its backoff.
            if not open_.exists():
                break
            idle += 1
            time.sleep(0.1)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_out)
    result = {
        "taken": taken,
        "idle_polls": idle,
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        # This worker's own backend: the server's total also counts other databases' work.
        "pg_cpu": backend_cpu(backend) - pg,
    }
    print(json.dumps(result), flush=True)


def spawn(mode: str, profile_out: str = "", wait: bool = True) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.notify.run", "--worker", mode]
    if profile_out:
        command += ["--profile-out", profile_out]
    if not wait:
        command.append("--no-wait")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=os.environ.copy(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_phase(
    mode: str,
    workers: int,
    *,
    profile: bool = False,
    kill_at: float = 0.0,
    receiver: Any = None,
    webhooks: int = 0,
) -> dict[str, Any]:
    profile_out = str(VAR / f"bench-notify-{mode}.prof") if profile else ""
    procs = [spawn(mode, profile_out if w == 0 else "") for w in range(workers)]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a {mode} worker did not start (said {line!r}, exit {proc.poll()})")
    postmaster = postmaster_pid()
    pg0, me0, m0 = pg_cpu_seconds(postmaster), self_cpu(), machine()
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    killed: dict[str, Any] | None = None
    victim = None
    while any(p.poll() is None for p in procs):
        if kill_at and killed is None and receiver.received >= kill_at * webhooks:
            # Not the profiled worker: its profile is written when it finishes.
            victim = procs[-1]
            victim.send_signal(signal.SIGKILL)
            killed = {
                "after_seconds": time.perf_counter() - started,
                "webhooks_received": receiver.received,
                "pid": victim.pid,
            }
            log(
                f"  killed worker {victim.pid} (SIGKILL) at {killed['after_seconds']:.1f}s, "
                f"{receiver.received:,} webhooks received; starting another"
            )
            procs.append(spawn(mode, wait=False))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    pg, me, m1 = pg_cpu_seconds(postmaster) - pg0, self_cpu() - me0, machine()
    results = []
    for proc in procs:
        out = proc.stdout.read() if proc.stdout is not None else ""
        if proc is victim:
            continue
        if proc.returncode != 0:
            raise SystemExit(f"a {mode} worker failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    total = m1[1] - m0[1]
    return {
        "seconds": seconds,
        "taken": sum(r["taken"] for r in results),
        "idle_polls": sum(r["idle_polls"] for r in results),
        "worker_cpu": sum(r["cpu"] for r in results),
        "pg_cpu": sum(r["pg_cpu"] for r in results) if postmaster is not None else None,
        "pg_server_cpu": pg if postmaster is not None else None,
        "parent_cpu": me,
        "busy_cores": (m1[0] - m0[0]) / total * (os.cpu_count() or 1) if total else 0.0,
        "killed": killed,
        "profile": profile_out,
    }


def top_of_profile(path: str, count: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(count)
    text = out.getvalue()
    return text[text.find("ncalls") :] if "ncalls" in text else text


# --- where time goes ---------------------------------------------------------------------------


def explain_claim(limit: int) -> tuple[str, float]:
    """EXPLAIN ANALYZE of the runner's main claim query, pending deliveries by due time (as
    delivery.claim builds it): plan, ms."""
    from django.db import connection, transaction
    from django.utils import timezone

    from jingwei.notify.models import Delivery, DeliveryStatus

    due = (
        Delivery.objects.filter(status=DeliveryStatus.PENDING, not_before__lte=timezone.now())
        .order_by("not_before", "id")
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)[:limit]
    )
    with transaction.atomic(), connection.cursor() as cur:
        sql, params = due.query.sql_with_params()  # FOR UPDATE compiles only in a transaction
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        lines = [row[0] for row in cur.fetchall()]
    ms = next(
        (float(x.split(":")[1].split()[0]) for x in lines if x.startswith("Execution Time")), 0.0
    )
    return "\n".join("    " + x for x in lines), ms


def probe(tenant_id: int) -> dict[str, Any]:
    """SQL statements and wall time of each step, in this process, on the tables as the run left
    them: PROBE_EVENTS events published, fanned out, claimed and delivered one by one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jingwei.notify.delivery import claim, deliver
    from jingwei.notify.services import event_publish, events_fan_out

    out: dict[str, Any] = {}
    with CaptureQueriesContext(connection) as q:
        t0 = time.perf_counter()
        for i in range(PROBE_EVENTS):
            event_publish(tenant_id=tenant_id, name=EVENT, payload=payload(i), key=f"probe-{i}")
        out["publish_ms"] = (time.perf_counter() - t0) * 1000 / PROBE_EVENTS
    out["publish_sql"] = len(q) / PROBE_EVENTS
    with CaptureQueriesContext(connection) as q:
        t0 = time.perf_counter()
        fanned = events_fan_out(limit=PROBE_EVENTS)
        out["fanout_ms"] = (time.perf_counter() - t0) * 1000 / max(1, fanned)
    # The first event also loads the tenant's context (rules, settings, people): amortised.
    out["fanout_sql"] = len(q) / max(1, fanned)
    deliveries = PROBE_EVENTS * RECIPIENTS * len(CHANNELS)
    with CaptureQueriesContext(connection) as q:
        t0 = time.perf_counter()
        batch = claim(deliveries)
        out["claim_ms"] = (time.perf_counter() - t0) * 1000
    out["claim_sql"] = len(q)
    out["claimed"] = len(batch)
    cache: dict[tuple[int, str], Any] = {}
    per: dict[str, list[float]] = {c: [0, 0.0, 0] for c in CHANNELS}  # n, ms, sql
    for d in batch:
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            deliver(d, cache)
            ms = (time.perf_counter() - t0) * 1000
        per[d.channel][0] += 1
        per[d.channel][1] += ms
        per[d.channel][2] += len(q)
    for channel, (n, ms, sql) in per.items():
        out[f"{channel}_ms"] = ms / n if n else None
        out[f"{channel}_sql"] = sql / n if n else None
    return out


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=int(os.environ.get("BENCH_NOTIFY_EVENTS") or 100_000)
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sample", type=int, default=2000, help="events through event_publish")
    parser.add_argument("--kill-at", type=float, default=0.4, help="0: kill no worker")
    parser.add_argument("--lease", type=int, default=5, help="NOTIFY_LEASE_SECONDS")
    parser.add_argument("--batch", type=int, default=0, help="NOTIFY_BATCH (0: the default)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="experiment: the bench database's synchronous_commit (PostgreSQL's default: on)",
    )
    parser.add_argument("--worker", choices=["fanout", "deliver"], help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.profile_out, not args.no_wait)
        return
    if not 0 < args.events < 100_000_000 or args.workers < 1:
        sys.exit("--events or --workers out of range")

    base = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    url = bench_url(base)
    # Read by the settings of this process and of every worker (they inherit the environment).
    os.environ["NOTIFY_LEASE_SECONDS"] = str(args.lease)
    os.environ["NOTIFY_RETRY_BASE_SECONDS"] = "1"  # a transient failure must not stall the run
    if args.batch:
        os.environ["NOTIFY_BATCH"] = str(args.batch)
    VAR.mkdir(exist_ok=True)
    m0 = machine()
    time.sleep(2)
    m1 = machine()
    background = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
    log(f"machine: {os.cpu_count()} cores, {background:.2f} busy before the run (other work)")
    started = time.perf_counter()
    fresh_database(url, args.synchronous_commit)
    setup_django(url)
    log(
        f"database {urlparse(url).path.lstrip('/')} migrated in {time.perf_counter() - started:.1f}s"
    )

    from django.conf import settings
    from django.db import connection
    from django.db.models import Count

    from jingwei.notify.models import Delivery, DeliveryStatus, Event, EventStatus, Notification
    from jingwei.notify.simulators import WebhookReceiver, serve

    receiver = WebhookReceiver(SECRET)
    served = serve(receiver)
    setup = build(served.url + "/hook")
    tenant_id = setup["tenant_id"]
    n, workers = args.events, args.workers
    expected = n * RECIPIENTS * len(CHANNELS)
    log(
        f"{n:,} events x {RECIPIENTS} recipients x {len(CHANNELS)} channels = {expected:,} "
        f"deliveries; {workers} worker processes; receiver {served.url}; lease "
        f"{settings.NOTIFY_LEASE_SECONDS}s, batch {settings.NOTIFY_BATCH}; {os.cpu_count()} cores"
    )

    with connection.cursor() as cur:
        cur.execute("SHOW autovacuum")
        autovacuum = cur.fetchone()[0]
    if autovacuum != "on":
        # Dead row versions then pile up in notify_delivery (two per delivery: claimed, sent)
        # and the claim query wades through them: slower than a server that vacuums.
        log(f"note: autovacuum is {autovacuum} on this server; nothing is vacuumed during the run")
    sample = min(n, args.sample)
    publish_s = publish_sample(tenant_id, sample)
    log(
        f"event_publish: {sample:,} events one by one in {publish_s:.2f}s = "
        f"{sample / publish_s:,.0f} events/s ({publish_s * 1000 / sample:.2f} ms each)"
    )
    if n > sample:
        bulk_s = bulk_events(tenant_id, sample, n - sample)
        log(f"bulk INSERT of the other {n - sample:,} events in {bulk_s:.1f}s")
    assert Event.objects.filter(tenant_id=tenant_id, status=EventStatus.NEW).count() == n

    fan = run_phase("fanout", workers, profile=args.profile)
    written = Delivery.objects.filter(tenant_id=tenant_id).count()
    left = Event.objects.filter(tenant_id=tenant_id, status=EventStatus.NEW).count()
    log(
        f"fan-out: {fan['taken']:,} events in {fan['seconds']:.1f}s = "
        f"{fan['taken'] / fan['seconds']:,.0f} events/s, {written:,} deliveries written "
        f"({written / fan['seconds']:,.0f}/s); events left new: {left}"
    )
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {Delivery._meta.db_table}")
    plan, claim_ms = explain_claim(settings.NOTIFY_BATCH)
    log(f"claim query with {written:,} deliveries pending: {claim_ms:.1f} ms")
    if args.profile:
        log(plan)

    sent_before = Delivery.objects.filter(tenant_id=tenant_id, status=DeliveryStatus.SENT).count()
    dlv = run_phase(
        "deliver",
        workers,
        profile=args.profile,
        kill_at=args.kill_at,
        receiver=receiver,
        webhooks=n * RECIPIENTS,
    )
    deliveries = Delivery.objects.filter(tenant_id=tenant_id)
    statuses = dict(
        deliveries.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    sent = statuses.get(DeliveryStatus.SENT, 0) - sent_before
    log(
        f"delivery: {sent:,} sent in {dlv['seconds']:.1f}s = {sent / dlv['seconds']:,.0f} "
        f"deliveries/s ({dlv['taken']:,} claims by the surviving workers, "
        f"{dlv['idle_polls']} idle polls)"
    )

    # Duplicates a person would see: inbox rows beyond one per in-app delivery.
    inapp_expected = n * RECIPIENTS
    inbox = Notification.objects.filter(tenant_id=tenant_id)
    inapp_rows = inbox.count()
    inapp_distinct = inbox.values("data__delivery").distinct().count()
    inapp_sent = deliveries.filter(channel="inapp", status=DeliveryStatus.SENT).count()
    with receiver.lock:
        received_ids = set(receiver.bodies)
        webhook_duplicates, rejected = receiver.duplicates, receiver.rejected
    webhook_sent = {
        str(u)
        for u in deliveries.filter(channel="webhook", status=DeliveryStatus.SENT).values_list(
            "uid", flat=True
        )
    }
    webhook_missing = len(webhook_sent - received_ids)
    webhook_unknown = len(received_ids - {str(u) for u in deliveries.values_list("uid", flat=True)})
    reclaimed = dict(
        deliveries.filter(attempts__gte=2)
        .values_list("channel")
        .annotate(n=Count("id"))
        .values_list("channel", "n")
    )
    errors = Counter(deliveries.exclude(last_error="").values_list("last_error", flat=True))
    duplicates = (inapp_rows - inapp_distinct) + webhook_duplicates
    log(
        f"in-app: {inapp_rows:,} inbox rows for {inapp_sent:,} sent deliveries "
        f"(expected {inapp_expected:,}; duplicates {inapp_rows - inapp_distinct})"
    )
    log(
        f"webhook: {len(received_ids):,} received (expected {n * RECIPIENTS:,}), "
        f"{webhook_duplicates} duplicates, {rejected} rejected, {webhook_missing} sent but not "
        f"received, {webhook_unknown} received but unknown"
    )
    log(f"statuses: {statuses}; claimed more than once: {reclaimed or 'none'}")
    if errors:
        log(f"last errors: {errors.most_common(3)}")
    if dlv["killed"]:
        log(
            f"after the kill: {sum(reclaimed.values())} deliveries sent again "
            f"({webhook_duplicates} of them webhooks the receiver already had)"
        )

    for label, phase, units in (("fan-out", fan, n), ("delivery", dlv, sent)):
        pg = phase["pg_cpu"]
        log(
            f"CPU {label}: workers {phase['worker_cpu']:.1f}s "
            f"({phase['worker_cpu'] * 1000 / max(1, units):.2f} ms per unit), their PostgreSQL "
            "backends "
            + (
                f"{pg:.1f}s ({pg * 1000 / max(1, units):.2f} ms; the whole server "
                f"{phase['pg_server_cpu']:.1f}s, other databases included)"
                if pg is not None
                else "n/a"
            )
            + f", this process (receiver) {phase['parent_cpu']:.1f}s; machine "
            f"{phase['busy_cores']:.2f} of {os.cpu_count()} cores busy"
        )
    for label, phase in (("fanout", fan), ("deliver", dlv)):
        if phase["profile"] and os.path.exists(phase["profile"]):
            log(f"cProfile of one {label} worker (CPU tottime), {phase['profile']}:")
            log(top_of_profile(phase["profile"]))

    p = probe(tenant_id)
    log(
        f"per step, in this process ({PROBE_EVENTS} more events): event_publish "
        f"{p['publish_sql']:.1f} SQL {p['publish_ms']:.2f} ms; fan-out of one event "
        f"{p['fanout_sql']:.1f} SQL {p['fanout_ms']:.2f} ms; claim of {p['claimed']} "
        f"{p['claim_sql']} SQL {p['claim_ms']:.1f} ms; in-app delivery {p['inapp_sql']:.1f} SQL "
        f"{p['inapp_ms']:.2f} ms; webhook delivery {p['webhook_sql']:.1f} SQL "
        f"{p['webhook_ms']:.2f} ms"
    )
    served.stop()

    # A worker killed between its POST and the record of it leaves one webhook to be sent again
    # with the same id (the at-least-once window docs/notify.md describes; the receiver keeps the
    # first): at most one for the one killed worker. The inbox admits none.
    window = 1 if dlv["killed"] else 0
    ok = (
        written == expected
        and sent == expected
        and inapp_rows == inapp_expected
        and inapp_rows == inapp_distinct
        and webhook_duplicates <= window
        and webhook_missing == 0
        and len(received_ids) == n * RECIPIENTS
    )
    log(
        f"duplicates: {duplicates} of {sent:,} deliveries ({duplicates / max(1, sent):.6%})"
        + (
            f" (webhooks sent again after the kill, at most {window} expected)"
            if window and webhook_duplicates
            else ""
        )
        + ("; all checks passed" if ok else "; CHECK FAILED (see above)")
    )
    killed = dlv["killed"]
    print(
        json.dumps(
            {
                "bench": "notify",
                "events": n,
                "recipients": RECIPIENTS,
                "channels": list(CHANNELS),
                "workers": workers,
                "cpu_count": os.cpu_count(),
                "background_busy_cores": round(background, 2),
                "fanout_busy_cores": round(fan["busy_cores"], 2),
                "delivery_busy_cores": round(dlv["busy_cores"], 2),
                "lease_seconds": settings.NOTIFY_LEASE_SECONDS,
                "batch": settings.NOTIFY_BATCH,
                "synchronous_commit": args.synchronous_commit,
                "autovacuum": autovacuum,
                "publish_sample": sample,
                "publish_events_per_s": round(sample / publish_s, 1),
                "deliveries_expected": expected,
                "deliveries_written": written,
                "fanout_seconds": round(fan["seconds"], 2),
                "fanout_events_per_s": round(n / fan["seconds"], 1),
                "deliveries_sent": sent,
                "delivery_seconds": round(dlv["seconds"], 2),
                "deliveries_per_s": round(sent / dlv["seconds"], 1),
                "inapp_rows": inapp_rows,
                "inapp_expected": inapp_expected,
                "inapp_duplicates": inapp_rows - inapp_distinct,
                "webhook_received": len(received_ids),
                "webhook_expected": n * RECIPIENTS,
                "webhook_duplicates": webhook_duplicates,
                "webhook_missing": webhook_missing,
                "webhook_rejected": rejected,
                "duplicates": duplicates,
                "duplicate_rate": duplicates / max(1, sent),
                "statuses": statuses,
                "claimed_again": reclaimed,
                "killed_worker": bool(killed),
                "killed_after_seconds": round(killed["after_seconds"], 2) if killed else None,
                "resent_after_kill": sum(reclaimed.values()) if killed else None,
                "claim_query_ms_all_pending": round(claim_ms, 2),
                "fanout_worker_cpu_ms_per_event": round(fan["worker_cpu"] * 1000 / n, 3),
                "fanout_pg_cpu_ms_per_event": (
                    round(fan["pg_cpu"] * 1000 / n, 3) if fan["pg_cpu"] is not None else None
                ),
                "delivery_worker_cpu_ms": round(dlv["worker_cpu"] * 1000 / max(1, sent), 3),
                "delivery_pg_cpu_ms": (
                    round(dlv["pg_cpu"] * 1000 / max(1, sent), 3)
                    if dlv["pg_cpu"] is not None
                    else None
                ),
                "delivery_receiver_cpu_ms": round(dlv["parent_cpu"] * 1000 / max(1, sent), 3),
                "sql_per_publish": p["publish_sql"],
                "sql_per_event_fanout": p["fanout_sql"],
                "sql_per_inapp_delivery": p["inapp_sql"],
                "sql_per_webhook_delivery": p["webhook_sql"],
                "sql_per_claim": p["claim_sql"],
                "ok": ok,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
