"""Flow engine benchmark: the shipped after-sales SOP driven end to end on PostgreSQL, the same BPMN
run by SpiffWorkflow (persisted as JSON at every step), and the timer loop's cost per tick.

    pip install spiffworkflow   # bench-only dependency; `make bench NAME=flows` installs it
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jw_bench \\
        .venv/bin/python -m bench.flows.run [--instances N] [--big-timers M]

Jingwei: every instance is started with services.instance_start and every user task completed with
services.task_complete (one durable transaction each, as the API does); the 1-day wait before 回访
is fired with core.timers.fire_due(now=+1 day). Each instance takes the rework path of the tests:
受理 派单 处理 验收(驳回) 处理 验收(通过) 回访 结算 — 8 user tasks, 21 node entries.
A transition is one FlowEvent of kind node.entered.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from datetime import timedelta
from typing import Any

from bench.common import ensure_database, log, setup_django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/jw_bench"
ACTIONS = ["reserve_parts", "consume_parts", "post_settlement_line"]
# The path every instance takes, with the outcome given at each user task.
PATH = [
    ("Task_Accept", ""),
    ("Task_Dispatch", ""),
    ("Task_Handle", ""),
    ("Task_Inspect", "reject"),
    ("Task_Handle", ""),
    ("Task_Inspect", "approve"),
    ("Task_Visit", ""),
    ("Task_Settle", ""),
]


# --- Jingwei -----------------------------------------------------------------------------------


def build_tenant() -> dict[str, Any]:
    """A fresh tenant with the regions and role holders the SOP assigns to."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from jingwei.org.models import (
        Department,
        Employee,
        Region,
        Role,
        RoleAssignment,
        RolePermission,
        Tenant,
    )
    from jingwei.org.permissions import PERMISSIONS

    stamp = f"{int(time.time() * 1000):x}"
    tenant = Tenant.objects.create(name=f"基准测试 {stamp}", slug=f"bench-{stamp}")
    password = make_password(None)

    def node(model: Any, name: str, parent: Any = None) -> Any:
        made = model.objects.create(tenant=tenant, name=name, parent=parent)
        made.save_path()
        return made

    hq = node(Department, "总部")
    service = node(Department, "华东服务部", hq)
    east = node(Region, "华东")
    shanghai = node(Region, "上海", east)
    pudong = node(Region, "浦东", shanghai)

    def role(name: str, codes: list[str]) -> Role:
        made = Role.objects.create(tenant=tenant, name=name)
        RolePermission.objects.bulk_create(
            RolePermission(tenant=tenant, role=made, permission_id=c) for c in codes
        )
        return made

    def person(no: str, name: str, region: Any, department: Any) -> Employee:
        user = get_user_model().objects.create(username=f"{stamp}-{no}", password=password)
        return Employee.objects.create(
            tenant=tenant,
            user=user,
            employee_no=no,
            name=name,
            region=region,
            department=department,
        )

    admin = person("A0001", "周志远", None, hq)
    RoleAssignment.objects.create(
        tenant=tenant, employee=admin, role=role("管理员", sorted(PERMISSIONS)), scope="tenant"
    )
    people = {"admin": admin}
    for no, role_name, name, region in [
        ("E0001", "客服", "王客服", shanghai),
        ("E0002", "调度员", "陈调度", shanghai),
        ("E0003", "质检员", "赵质检", shanghai),
        ("E0004", "结算专员", "孙结算", east),
        ("E0005", "工程师", "杨工程师", pudong),
    ]:
        people[role_name] = person(no, name, region, service)
        RoleAssignment.objects.create(
            tenant=tenant,
            employee=people[role_name],
            role=role(role_name, ["flow.view"]),
            scope="self",
        )
    return {"tenant": tenant, "pudong": pudong, "people": people}


def register_actions() -> None:
    """Stand-ins for the parts and settlement modules' actions (as tests/flows/test_engine.py)."""
    from jingwei.flows import engine

    def record(name: str) -> Any:
        def run(instance: Any, node: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
            return {f"{name}_done": True}

        return run

    for name in ACTIONS:
        engine.action(name)(record(name))


def drive_jingwei(setup: dict[str, Any], first: int, count: int) -> None:
    """Drive instances first..first+count-1 to completion, as the console's users would."""
    from django.db.models import Q
    from django.utils import timezone

    from jingwei.core.models import Timer
    from jingwei.core.timers import fire_next
    from jingwei.flows import services
    from jingwei.flows.models import Task, TaskStatus
    from jingwei.org.models import Employee
    from jingwei.org.scope import actor_for

    actors = {p.pk: actor_for(p) for p in Employee.objects.filter(tenant_id=setup["tenant_id"])}
    admin = actors[setup["admin_id"]]
    started = time.perf_counter()
    for i in range(first, first + count):
        instance = services.instance_start(
            actor=admin,
            key="after_sales",
            data={"priority": "normal", "engineer": setup["engineer"], "parts": ["P-1"]},
            business_key=f"GD-BENCH-{i:06d}",
            region_id=setup["region_id"],
        )
        for node_id, outcome in PATH:
            if node_id == "Task_Visit":
                # The 1-day wait after 扣减备件: a day passes for this instance's timer, and the
                # timer loop takes due timers until 回访 is open (with several drivers, a tick
                # may fire another driver's wait first; each fires as many as it makes due).
                Timer.objects.filter(
                    Q(payload__instance_id=instance.pk), kind="flows.timer", status="pending"
                ).update(due_at=timezone.now() - timedelta(seconds=1))
            while True:
                task = (
                    Task.objects.filter(instance=instance, status=TaskStatus.OPEN)
                    .values_list("pk", "node_id", "assignee_id")
                    .first()
                )
                if task is not None:
                    break
                fire_next()
            assert task[1] == node_id, (task, node_id)
            services.task_complete(
                actor=actors[task[2]],
                task_id=task[0],
                outcome=outcome,
                data={"settlement_amount": 300} if node_id == "Task_Settle" else {},
            )
        done = i + 1 - first
        if done % max(1, count // 5) == 0:
            log(f"  jingwei driver {first}: {done}/{count} ({time.perf_counter() - started:.1f}s)")


def _driver(setup: dict[str, Any], first: int, count: int) -> None:
    from django.db import connections

    connections.close_all()  # a forked child opens its own connection
    register_actions()
    drive_jingwei(setup, first, count)
    connections.close_all()


def run_jingwei(n: int, workers: int) -> dict[str, Any]:
    """n instances split over `workers` processes (forked, one database connection each)."""
    import multiprocessing

    from django.db import connections

    from jingwei.flows.demo import load_shipped_flows
    from jingwei.flows.models import FlowEvent, Instance, InstanceStatus

    made = build_tenant()
    tenant = made["tenant"]
    register_actions()
    load_shipped_flows(tenant.pk)
    setup = {
        "tenant_id": tenant.pk,
        "admin_id": made["people"]["admin"].pk,
        "engineer": made["people"]["工程师"].employee_no,
        "region_id": made["pudong"].pk,
    }
    shares = [n // workers + (1 if w < n % workers else 0) for w in range(workers)]
    started = time.perf_counter()
    if workers == 1:
        drive_jingwei(setup, 0, n)
    else:
        connections.close_all()
        context = multiprocessing.get_context("fork")
        procs = [
            context.Process(target=_driver, args=(setup, sum(shares[:w]), shares[w]))
            for w in range(workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            assert proc.exitcode == 0, f"a driver failed (exit {proc.exitcode})"
    seconds = time.perf_counter() - started

    instances = Instance.objects.filter(tenant=tenant)
    completed = instances.filter(status=InstanceStatus.COMPLETED).count()
    assert completed == n, f"{completed} of {n} instances completed"
    transitions = FlowEvent.objects.filter(tenant=tenant, kind="node.entered").count()
    return {"instances": n, "transitions": transitions, "seconds": seconds, "tenant_id": tenant.pk}


# --- SpiffWorkflow -----------------------------------------------------------------------------

SPIFF_SCRIPTS = {"notify": "customer_notified = True", "set_field": 'status = "archived"'}


def spiff_xml(xml: str) -> str:
    """The SOP as SpiffWorkflow's generic BPMN parser can run it (see EQUALISED)."""

    def service_to_script(m: re.Match[str]) -> str:
        body = m.group(0)
        found = re.search(r'<jw:action name="([^"]+)"', body)
        name = found.group(1) if found else ""
        script = SPIFF_SCRIPTS.get(name, f"{name}_done = True")
        body = re.sub(
            r"<bpmn:extensionElements>.*?</bpmn:extensionElements>",
            f"<bpmn:script>{script}</bpmn:script>",
            body,
            flags=re.S,
        )
        return body.replace("<bpmn:serviceTask", "<bpmn:scriptTask").replace(
            "</bpmn:serviceTask>", "</bpmn:scriptTask>"
        )

    xml = re.sub(r"<bpmn:serviceTask .*?</bpmn:serviceTask>", service_to_script, xml, flags=re.S)
    xml = re.sub(r"<bpmn:extensionElements>.*?</bpmn:extensionElements>\s*", "", xml, flags=re.S)
    # Spiff evaluates timeDuration as a Python expression: quote it. The 1-day wait becomes
    # due at once (Jingwei's is fired by a tick a day ahead); the 7-day boundary never fires.
    return xml.replace(">P1D<", '>"PT0S"<').replace(">P7D<", '>"P7D"<')


EQUALISED = (
    "Spiff equalisation: jw:* extension elements stripped (no assignment, SLA timers, forms, "
    "outcomes or audit events in Spiff); service tasks turned into script tasks that set the "
    "same data the stand-in actions return (notify -> customer_notified, set_field -> status); "
    'timer durations quoted for Spiff\'s Python evaluator, the 1-day wait set to "PT0S" '
    "(Jingwei fires it with one fire_due tick a day ahead), the 7-day boundary left unfired in "
    "both; same path (8 user tasks incl. one rejection), workflow serialised to JSON after start "
    "and after every step and deserialised before the next; parse/publish excluded from both. "
    "Spiff keeps everything in one JSON blob in memory (no database, no locking)."
)


SPIFF_TABLE = "bench_spiff_workflow"


def drive_spiff(xml: str, count: int, store_url: str | None, result: Any = None) -> dict[str, Any]:
    """Run `count` instances; with `store_url`, also write the JSON to PostgreSQL at every step
    (one UPDATE, one commit) and read it back before the next, as an application would."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG
    from SpiffWorkflow.util.task import TaskState

    logging.getLogger("spiff").setLevel(logging.WARNING)  # per-task INFO lines would dominate
    parser = BpmnParser()
    parser.add_bpmn_str(spiff_xml(xml).encode("utf-8"))
    spec = parser.get_spec("after_sales_sop")
    nodes = set(re.findall(r'<bpmn:\w+ id="([^"]+)"', xml)) - {"after_sales_sop"}
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
    conn = None
    if store_url:
        import psycopg

        conn = psycopg.connect(store_url, autocommit=True)

    def save(row: int, blob: str) -> str:
        if conn is not None:
            with conn.transaction():
                conn.execute(f"UPDATE {SPIFF_TABLE} SET state = %s WHERE id = %s", [blob, row])
        return blob

    def load(row: int, blob: str) -> str:
        if conn is None:
            return blob
        found = conn.execute(f"SELECT state FROM {SPIFF_TABLE} WHERE id = %s", [row]).fetchone()
        assert found is not None
        return str(found[0])

    transitions = 0
    stored = ""
    for _ in range(count):
        row = 0
        if conn is not None:
            got = conn.execute(
                f"INSERT INTO {SPIFF_TABLE} (state) VALUES ('') RETURNING id"
            ).fetchone()
            assert got is not None
            row = got[0]
        workflow = BpmnWorkflow(spec)
        workflow.data.update({"priority": "normal", "engineer": "E0005", "parts": ["P-1"]})
        workflow.do_engine_steps()
        stored = save(row, serializer.serialize_json(workflow))
        steps = iter(PATH)
        while True:
            workflow = serializer.deserialize_json(load(row, stored))
            if workflow.is_completed():
                break
            ready = workflow.get_tasks(state=TaskState.READY, manual=True)
            if not ready:  # waiting on the timer: one tick
                workflow.refresh_waiting_tasks()
                workflow.do_engine_steps()
                stored = save(row, serializer.serialize_json(workflow))
                continue
            task = ready[0]
            node_id, outcome = next(steps)
            assert task.task_spec.bpmn_id == node_id, (task.task_spec.bpmn_id, node_id)
            task.data["outcome"] = outcome
            if node_id == "Task_Settle":
                task.data["settlement_amount"] = 300
            task.run()
            workflow.do_engine_steps()
            stored = save(row, serializer.serialize_json(workflow))
        transitions += sum(
            1 for t in workflow.get_tasks(state=TaskState.COMPLETED) if t.task_spec.bpmn_id in nodes
        )
    out = {"transitions": transitions, "json_bytes": len(stored)}
    if result is not None:
        result.put(out)
    return out


def run_spiff(n: int, xml: str, workers: int, store_url: str | None = None) -> dict[str, Any]:
    import multiprocessing

    if store_url:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {SPIFF_TABLE}")
            conn.execute(
                f"CREATE TABLE {SPIFF_TABLE} (id bigserial PRIMARY KEY, state text NOT NULL)"
            )
    shares = [n // workers + (1 if w < n % workers else 0) for w in range(workers)]
    started = time.perf_counter()
    if workers == 1:
        results = [drive_spiff(xml, n, store_url)]
    else:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        procs = [
            context.Process(target=drive_spiff, args=(xml, share, store_url, queue))
            for share in shares
        ]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=24 * 3600) for _ in procs]
        for proc in procs:
            proc.join()
            assert proc.exitcode == 0, f"a Spiff driver failed (exit {proc.exitcode})"
    seconds = time.perf_counter() - started
    return {
        "instances": n,
        "transitions": sum(r["transitions"] for r in results),
        "seconds": seconds,
        "json_bytes": results[0]["json_bytes"],
    }


# --- timer loop --------------------------------------------------------------------------------

BENCH_KIND = "bench.noop"


def fill_timers(tenant_id: int, total: int) -> float:
    """Top core_timer up to `total` pending bench timers due in ~10 years, by INSERT … SELECT
    generate_series (much faster than bulk_create for a million rows; same rows)."""
    from django.db import connection

    from jingwei.core.models import Timer

    table = Timer._meta.db_table
    have = Timer.objects.filter(kind=BENCH_KIND, status="pending").count()
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {table}
                    (tenant_id, kind, key, payload, due_at, status, attempts, last_error, created_at)
                SELECT %s, %s, '', '{{}}'::jsonb,
                       now() + interval '3650 days' + g * interval '1 second',
                       'pending', 0, '', now()
                FROM generate_series(1, %s) AS g""",
            [tenant_id, BENCH_KIND, max(0, total - have)],
        )
        cur.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def measure_tick(tenant_id: int, rounds: int = 200) -> dict[str, float]:
    """Idle tick: one fire_due() with nothing due. Claim: fire_next() taking one due timer."""
    from django.utils import timezone

    from jingwei.core.models import Timer
    from jingwei.core.timers import fire_due, fire_next, timer_handler, timer_schedule

    timer_handler(BENCH_KIND)(lambda timer: None)
    fire_due(limit=100000)  # anything left due from the run: out of the way
    started = time.perf_counter()
    for _ in range(rounds):
        assert fire_due() == 0
    idle_ms = (time.perf_counter() - started) * 1000 / rounds

    claim_rounds = max(1, rounds // 4)
    past = timezone.now() - timedelta(seconds=1)
    elapsed = 0.0
    for _ in range(claim_rounds):
        timer_schedule(tenant_id=tenant_id, kind=BENCH_KIND, due_at=past)
        t0 = time.perf_counter()
        fired = fire_next()
        elapsed += time.perf_counter() - t0
        assert fired is not None and fired.kind == BENCH_KIND
    Timer.objects.filter(kind=BENCH_KIND, status="fired").delete()
    return {"idle_ms": idle_ms, "claim_ms": elapsed * 1000 / claim_rounds}


def run_timers(tenant_id: int, big_n: int) -> dict[str, Any]:
    from jingwei.core.models import Timer

    Timer.objects.filter(kind=BENCH_KIND).delete()
    out: dict[str, Any] = {}
    for label, total in (("10k", 10_000), ("big", big_n)):
        fill = fill_timers(tenant_id, total)
        pending = Timer.objects.filter(status="pending").count()
        tick = measure_tick(tenant_id)
        log(
            f"timer loop with {pending:,} pending timers (filled in {fill:.1f}s): "
            f"idle tick {tick['idle_ms']:.3f} ms, claiming one due timer {tick['claim_ms']:.3f} ms"
        )
        out[label] = tick
    started = time.perf_counter()
    Timer.objects.filter(kind=BENCH_KIND).delete()
    log(f"bench timers removed in {time.perf_counter() - started:.1f}s")
    return out


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--big-timers", type=int, default=1_000_000)
    parser.add_argument("--skip-spiff", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=2, help="driver processes on each side (the goal: 2 cores)"
    )
    args = parser.parse_args(argv)

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    ensure_database(url)
    setup_django(url)
    from jingwei.flows.demo import shipped_xml

    n, workers = args.instances, args.workers
    log(
        f"Jingwei: {n} instances of the after-sales SOP on PostgreSQL, {workers} driver process(es)"
    )
    jw = run_jingwei(n, workers)
    jw_tps = jw["transitions"] / jw["seconds"]
    log(
        f"Jingwei: {jw['transitions']} transitions in {jw['seconds']:.2f}s = {jw_tps:.1f} "
        f"transitions/s ({n / jw['seconds']:.1f} instances/s)"
    )

    spiff_tps = stored_tps = None
    if not args.skip_spiff:
        xml = shipped_xml("after_sales")
        log(f"SpiffWorkflow: {n} instances of the same BPMN, JSON round trip at every step")
        log(EQUALISED)
        sp = run_spiff(n, xml, workers)
        spiff_tps = sp["transitions"] / sp["seconds"]
        log(
            f"SpiffWorkflow: {sp['transitions']} transitions in {sp['seconds']:.2f}s = "
            f"{spiff_tps:.1f} transitions/s ({n / sp['seconds']:.1f} instances/s, "
            f"final JSON {sp['json_bytes']:,} bytes)"
        )
        log(
            f"ratio Jingwei/Spiff: {jw_tps / spiff_tps:.3f} in transitions/s, "
            f"{sp['seconds'] / jw['seconds']:.3f} in instances/s (Spiff counts the parallel join "
            "once, Jingwei once per arriving token: 20 vs 21 node entries an instance)"
        )
        st = run_spiff(n, xml, workers, store_url=url)
        stored_tps = st["transitions"] / st["seconds"]
        log(
            f"SpiffWorkflow with the JSON also stored in PostgreSQL at every step (one UPDATE and "
            f"commit, read back before the next): {stored_tps:.1f} transitions/s; "
            f"ratio Jingwei/that: {jw_tps / stored_tps:.3f}"
        )

    ticks = run_timers(jw["tenant_id"], args.big_timers)

    print(
        json.dumps(
            {
                "instances": n,
                "transitions": jw["transitions"],
                "seconds": round(jw["seconds"], 3),
                "transitions_per_second": round(jw_tps, 1),
                "spiff_transitions_per_second": round(spiff_tps, 1) if spiff_tps else None,
                "ratio": round(jw_tps / spiff_tps, 3) if spiff_tps else None,
                "spiff_stored_transitions_per_second": round(stored_tps, 1) if stored_tps else None,
                "ratio_stored": round(jw_tps / stored_tps, 3) if stored_tps else None,
                "workers": workers,
                "tick_ms_10k": round(ticks["10k"]["idle_ms"], 3),
                "tick_ms_big": round(ticks["big"]["idle_ms"], 3),
                "claim_ms_10k": round(ticks["10k"]["claim_ms"], 3),
                "claim_ms_big": round(ticks["big"]["claim_ms"], 3),
                "big_n": args.big_timers,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
