"""Customer data platform benchmark on PostgreSQL: segment counts, identity resolution and the
auto-tag batch over a large tenant.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jw_bench_customers \\
        .venv/bin/python -m bench.customers.run [--customers N] [--seconds S] [--workers W]

The data (default: 500,000 customers, 5 identities and 8 tags each, 10 events each = 5,000,000
events over the last year) is generated inside PostgreSQL from the row numbers, so the same
arguments always give the same rows; a tenant built by an earlier run with the same size is
reused (building takes minutes, the measurements seconds).

Figures:
- segment_count_s: counting 上海 · 高频用户 · no ticket in 30 days (JOURNEYS D3: region subtree,
  a tag, an event window) as HQ sees it, through customers.conditions — the code segments use.
  The median of 5 runs after one warm-up; the first (cold) run is printed too.
- identities_per_minute: customer_resolve calls (each one durable transaction, as the API and the
  ingest do) from `--workers` processes for `--seconds`, each stating 2 identities (phone + WeChat
  unionid): half belong to existing customers, half are new.
- batch_identities_per_minute: the same customers resolved 500 at a time by services.resolve_many
  (one transaction each), as imports, syncs and the event batch do.
- auto_tag_s: the two shipped rules (高频用户: ≥3 orders in 90 days; 潜在流失客户: ≥3
  mini-program views and no order in 3 days) run over every customer by services.rules_run_all;
  first run (tags to add) and a second run (nothing changes).
- score_s: services.scores_recompute over every customer with the demo signals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

from bench.common import ensure_database, log, setup_django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/jw_bench_customers"
LEAF_REGIONS = [
    ("华东", "上海", "浦东"),
    ("华东", "上海", "徐汇"),
    ("华东", "江苏", "南京"),
    ("华东", "江苏", "苏州"),
    ("华东", "浙江", "杭州"),
    ("华南", "广东", "广州"),
    ("华南", "广东", "深圳"),
    ("华北", "北京", "朝阳"),
    ("西南", "四川", "成都"),
    ("华中", "湖北", "武汉"),
]
TAG_GROUPS = {
    "客户价值": ["高价值", "中价值", "低价值", "高频用户", "潜在流失客户"],
    "兴趣": ["空调", "冰箱", "洗衣机", "热水器", "净水器"],
    "来源": ["门店", "天猫", "京东", "抖音", "小程序"],
    "生命周期": ["新客", "活跃", "沉睡", "流失", "回流"],
    "服务": ["延保", "安装", "维修", "清洗", "以旧换新"],
    "偏好": ["电话", "企微", "短信", "邮件", "上门"],
    "地区特征": ["一线", "二线", "三线", "县域", "海外"],
    "营销": ["领券", "拼团", "砍价", "会员日", "直播"],
    "企业": ["集团客户", "经销商", "物业", "学校", "医院"],
    "其他": ["投诉过", "VIP 顾问", "黑名单", "测试", "内部"],
}
EVENTS_PER_CUSTOMER = 10
TAGS_PER_CUSTOMER = 8


def tenant_slug(n: int) -> str:
    return f"bench-customers-{n}"


# --- data ------------------------------------------------------------------------------------


def build(n: int) -> dict[str, Any]:
    """The tenant with n customers, reused when an earlier run finished building it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from jingwei.customers.models import CustomerSettings, Tag, TagGroup
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

    slug = tenant_slug(n)
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant and CustomerSettings.objects.filter(tenant=tenant).exists():  # the "built" mark
        log(f"reusing tenant {slug}")
        return describe(tenant)
    if tenant:
        log(f"tenant {slug} was left half-built; deleting it")
        with connection.cursor() as cur:
            for table in (
                "customers_customerevent",
                "customers_customertag",
                "customers_identity",
                "customers_tagrule",
                "customers_scoresignal",
                "customers_customer",
            ):
                cur.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant.pk])
        tenant.delete()

    started = time.perf_counter()
    with transaction.atomic():
        tenant = Tenant.objects.create(name=f"基准测试客户 {n}", slug=slug)

        def node(model: Any, name: str, parent: Any = None) -> Any:
            made = model.objects.create(tenant=tenant, name=name, parent=parent)
            made.save_path()
            return made

        hq = node(Department, "总部")
        made: dict[tuple[str, ...], Any] = {}
        leaves = []
        for path in LEAF_REGIONS:
            parent = None
            for depth in range(1, len(path) + 1):
                key = path[:depth]
                if key not in made:
                    made[key] = node(Region, key[-1], parent)
                parent = made[key]
            leaves.append(parent)
        password = make_password(None)
        owners = []
        for i in range(50):
            user = get_user_model().objects.create(username=f"{slug}-e{i}", password=password)
            owners.append(
                Employee.objects.create(
                    tenant=tenant,
                    user=user,
                    employee_no=f"E{i:04d}",
                    name=f"顾问{i:02d}",
                    region=leaves[i % len(leaves)],
                    department=hq,
                )
            )
        role = Role.objects.create(tenant=tenant, name="管理员")
        RolePermission.objects.bulk_create(
            RolePermission(tenant=tenant, role=role, permission_id=c) for c in sorted(PERMISSIONS)
        )
        RoleAssignment.objects.create(tenant=tenant, employee=owners[0], role=role, scope="tenant")
        tags = []
        for sort, (group_name, names) in enumerate(TAG_GROUPS.items()):
            group = TagGroup.objects.create(tenant=tenant, name=group_name, sort=sort)
            tags += [Tag.objects.create(tenant=tenant, group=group, name=t) for t in names]

    t = tenant.pk
    leaf_ids = "ARRAY[" + ",".join(str(r.pk) for r in leaves) + "]"
    owner_ids = "ARRAY[" + ",".join(str(e.pk) for e in owners) + "]"
    # The rules' tags (高频用户, 潜在流失客户) are left for the rules to set.
    manual = [tag for tag in tags if tag.name not in ("高频用户", "潜在流失客户")]
    tag_ids = "ARRAY[" + ",".join(str(tag.pk) for tag in manual) + "]"
    # h(i, salt): a fixed pseudo-random non-negative integer per row number.
    h = "abs(hashtext(i::text || ':{salt}'))"
    with connection.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence('customers_customer', 'id'))")
        base = cur.fetchone()[0]
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('customers_customer', 'id'), %s)", [base + n]
        )
        log(f"customers {base + 1}..{base + n}")
        cur.execute(
            f"""
            INSERT INTO customers_customer (id, tenant_id, kind, name, company_name, company_key,
                region_id, department_id, owner_id, level, source, remark, merged_into_id,
                merged_at, owned_since, last_followed_at, next_follow_up_at, score, scored_at,
                created_at, updated_at)
            SELECT {base} + i, {t}, 'person', '客户' || i, '', '',
                ({leaf_ids})[1 + {h.format(salt="r")} % {len(leaves)}], NULL,
                CASE WHEN {h.format(salt="p")} % 10 = 0 THEN NULL
                     ELSE ({owner_ids})[1 + {h.format(salt="o")} % {len(owners)}] END,
                CASE WHEN {h.format(salt="l")} % 20 = 0 THEN 'vip'
                     WHEN {h.format(salt="l")} % 5 = 0 THEN 'potential' ELSE 'normal' END,
                'bench', '', NULL, NULL,
                now() - make_interval(days => {h.format(salt="c")} % 700),
                now() - make_interval(days => {h.format(salt="f")} % 90),
                NULL, 0, NULL,
                now() - make_interval(days => {h.format(salt="c")} % 700), now()
            FROM generate_series(1, {n}) AS i
            """
        )
        log(f"  customers in {time.perf_counter() - started:.0f}s")
        cur.execute(
            f"""
            INSERT INTO customers_identity (tenant_id, customer_id, kind, namespace, value,
                verified, source, status, first_seen_at, last_seen_at, removed_at, created_at)
            SELECT {t}, {base} + i, k.kind, k.ns,
                CASE k.kind WHEN 'phone' THEN (13000000000 + i)::text
                            WHEN 'email' THEN 'c' || i || '@bench.example.com'
                            WHEN 'wecom' THEN 'wmBench' || lpad(i::text, 10, '0')
                            WHEN 'wechat_unionid' THEN 'oBench' || lpad(i::text, 22, '0')
                            ELSE 'tb_buyer_' || i END,
                false, 'bench', 'active', now(), now(), NULL, now()
            FROM generate_series(1, {n}) AS i,
                (VALUES ('phone', ''), ('email', ''), ('wecom', ''), ('wechat_unionid', ''),
                        ('shop_buyer', 'taobao')) AS k(kind, ns)
            """
        )
        log(f"  identities in {time.perf_counter() - started:.0f}s")
        # 8 distinct tags per customer: steps of 7 through 48 tags never repeat within 8.
        cur.execute(
            f"""
            INSERT INTO customers_customertag (tenant_id, customer_id, tag_id, source, rule_id,
                tagged_by_id, tagged_at)
            SELECT {t}, {base} + i,
                ({tag_ids})[1 + ({h.format(salt="t")} + k * 7) % {len(manual)}],
                'manual', NULL, NULL, now()
            FROM generate_series(1, {n}) AS i, generate_series(0, {TAGS_PER_CUSTOMER - 1}) AS k
            """
        )
        log(f"  customer tags in {time.perf_counter() - started:.0f}s")
        # Events: a mix of kinds over the last year; orders carry amounts.
        cur.execute(
            f"""
            INSERT INTO customers_customerevent (tenant_id, customer_id, kind, channel, event_id,
                title, amount, data, occurred_at, received_at)
            SELECT {t}, {base} + 1 + (i % {n}), e.kind,
                CASE e.kind WHEN 'page_view' THEN
                        CASE WHEN {h.format(salt="ch")} % 2 = 0 THEN 'miniprogram' ELSE 'web' END
                    WHEN 'order' THEN
                        CASE WHEN {h.format(salt="ch")} % 2 = 0 THEN 'taobao' ELSE 'jd' END
                    ELSE '' END,
                'bench-' || i, '',
                CASE WHEN e.kind = 'order' THEN ({h.format(salt="a")} % 500000) / 100.0 END,
                '{{}}'::jsonb,
                now() - make_interval(secs => {h.format(salt="at")} % (365 * 86400)), now()
            FROM generate_series(0, {n * EVENTS_PER_CUSTOMER - 1}) AS i,
                LATERAL (SELECT CASE
                    WHEN {h.format(salt="k")} % 20 < 8 THEN 'page_view'
                    WHEN {h.format(salt="k")} % 20 < 10 THEN 'order'
                    WHEN {h.format(salt="k")} % 20 < 13 THEN 'chat'
                    WHEN {h.format(salt="k")} % 20 < 15 THEN 'ticket'
                    WHEN {h.format(salt="k")} % 20 < 16 THEN 'form'
                    WHEN {h.format(salt="k")} % 20 < 17 THEN 'campaign'
                    WHEN {h.format(salt="k")} % 20 < 18 THEN 'call'
                    ELSE 'mail' END AS kind) AS e
            """
        )
        log(f"  events in {time.perf_counter() - started:.0f}s")
        for table in (
            "customers_customer",
            "customers_identity",
            "customers_customertag",
            "customers_customerevent",
        ):
            cur.execute(f"VACUUM ANALYZE {table}")
    CustomerSettings.objects.create(tenant=tenant)
    log(f"built tenant {slug} in {time.perf_counter() - started:.0f}s")
    return describe(tenant)


def describe(tenant: Any) -> dict[str, Any]:
    from jingwei.customers.models import Tag
    from jingwei.org.models import Employee, Region

    return {
        "tenant_id": tenant.pk,
        "admin_id": Employee.objects.filter(tenant=tenant, employee_no="E0000").get().pk,
        "shanghai_id": Region.objects.get(tenant=tenant, name="上海").pk,
        "east_id": Region.objects.get(tenant=tenant, name="华东").pk,
        "tags": dict(Tag.objects.filter(tenant=tenant).values_list("name", "pk")),
    }


def counts(tenant_id: int) -> dict[str, int]:
    from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Identity

    return {
        "customers": Customer.objects.filter(tenant_id=tenant_id).count(),
        "identities": Identity.objects.filter(tenant_id=tenant_id).count(),
        "customer_tags": CustomerTag.objects.filter(tenant_id=tenant_id).count(),
        "events": CustomerEvent.objects.filter(tenant_id=tenant_id).count(),
    }


# --- measurements ----------------------------------------------------------------------------


def segment_count(setup: dict[str, Any]) -> dict[str, Any]:
    from jingwei.org.models import Employee
    from jingwei.org.scope import actor_for

    actor = actor_for(Employee.objects.get(pk=setup["admin_id"]))
    narrow = {
        "all": [
            {"field": "region", "op": "in", "value": [setup["shanghai_id"]]},
            {"tag": setup["tags"]["高频用户"]},
            {"event": "ticket", "within_days": 30, "op": "eq", "value": 0},
        ]
    }
    # A broad one: no selective tag, every condition matches a large share of customers.
    broad = {
        "all": [
            {"field": "region", "op": "in", "value": [setup["east_id"]]},
            {"event": "order", "within_days": 365, "op": "gte", "value": 1},
            {"event": "ticket", "within_days": 30, "op": "eq", "value": 0},
        ]
    }
    return {
        "narrow": _count(setup, actor, narrow, "上海 · 高频用户 · 30 天无工单"),
        "broad": _count(setup, actor, broad, "华东 · 一年内有订单 · 30 天无工单"),
    }


def _count(setup: dict[str, Any], actor: Any, tree: dict[str, Any], label: str) -> dict[str, Any]:
    from jingwei.customers import conditions
    from jingwei.customers.models import Customer

    def count() -> tuple[int, float]:
        started = time.perf_counter()
        node = conditions.check(tree, setup["tenant_id"])
        members = (
            Customer.objects.visible_to(actor, "customer.view")
            .active()
            .filter(conditions.to_q(node, setup["tenant_id"]))
            .count()
        )
        return members, time.perf_counter() - started

    members, cold = count()
    times = [count()[1] for _ in range(6)][1:]
    log(
        f"segment {label}: {members} members; cold {cold:.3f}s, "
        f"median {statistics.median(times):.3f}s of {len(times)}"
    )
    return {"members": members, "cold_s": cold, "median_s": statistics.median(times)}


def _resolve_worker(
    tenant_id: int, n: int, first: int, seconds: float, batch: int, out: Any
) -> None:
    from django.db import connections, transaction

    from jingwei.customers import services
    from jingwei.customers.identities import IdentityInput

    connections.close_all()  # a forked child opens its own connection
    calls = 0
    deadline = time.perf_counter() + seconds

    def stated(k: int) -> Any:
        # Even k: a customer of the generated data; odd: someone new (numbers past n).
        number = ((first + k) * 7919) % n + 1 if k % 2 == 0 else n + first + k
        identities = [
            IdentityInput("phone", str(13000000000 + number)),
            IdentityInput("wechat_unionid", "oBench" + str(number).zfill(22)),
        ]
        return services.ResolveItem(identities, {"name": f"客户{number}"})

    while time.perf_counter() < deadline:
        with transaction.atomic(durable=True):
            if batch <= 1:
                item = stated(calls)
                services.resolve_in_transaction(
                    actor=None,
                    tenant_id=tenant_id,
                    identities=item.identities,
                    profile=item.profile,
                    source="bench",
                )
                calls += 1
            else:
                items = [stated(calls + k) for k in range(batch)]
                services.resolve_many(actor=None, tenant_id=tenant_id, items=items, source="bench")
                calls += batch
    out.put(calls)


def resolve_rate(
    setup: dict[str, Any], n: int, workers: int, seconds: float, batch: int
) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    # Each process and each run takes its own range of new numbers, so "new" stays new (phones
    # stay 11 digits: 130 0000 0000 + at most a few 10^8).
    offset = int(time.time()) % 100 * 10**6
    procs = [
        context.Process(
            target=_resolve_worker,
            args=(setup["tenant_id"], n, offset + w * 10**5, seconds, batch, out),
        )
        for w in range(workers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    calls = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    per_minute = calls * 2 / elapsed * 60
    log(
        f"resolution ({'one call per transaction' if batch <= 1 else f'resolve_many of {batch}'},"
        f" {workers} process(es)): {calls} calls, {calls * 2} identities in {elapsed:.1f}s = "
        f"{per_minute:,.0f} identities/min"
    )
    return {"calls": calls, "seconds": elapsed, "identities_per_minute": per_minute}


def auto_tag(setup: dict[str, Any]) -> dict[str, Any]:
    from jingwei.customers import services
    from jingwei.customers.models import TagRule

    tenant_id = setup["tenant_id"]
    for name, tag, conds in [
        (
            "近 90 天下单 ≥ 3 次",
            "高频用户",
            {"event": "order", "within_days": 90, "op": "gte", "value": 3},
        ),
        (
            "3 天内小程序浏览 ≥ 3 次且未下单",
            "潜在流失客户",
            {
                "all": [
                    {
                        "event": "page_view",
                        "channel": "miniprogram",
                        "within_days": 3,
                        "op": "gte",
                        "value": 3,
                    },
                    {"event": "order", "within_days": 3, "op": "eq", "value": 0},
                ]
            },
        ),
    ]:
        TagRule.objects.update_or_create(
            tenant_id=tenant_id,
            name=name,
            defaults={"tag_id": setup["tags"][tag], "conditions": conds, "enabled": True},
        )
    runs = []
    for label in ("first", "second"):
        started = time.perf_counter()
        stats = services.rules_run_all(tenant_id=tenant_id)
        elapsed = time.perf_counter() - started
        log(f"auto-tag rules, {label} run: {elapsed:.2f}s {stats}")
        runs.append(elapsed)
    return {"first_s": runs[0], "second_s": runs[1]}


def scoring(setup: dict[str, Any]) -> float | None:
    from jingwei.customers import services
    from jingwei.customers.models import ScoreSignal

    tenant_id = setup["tenant_id"]
    for name, points, conds in [
        ("VIP", 30, {"field": "level", "op": "eq", "value": "vip"}),
        ("近 90 天下单 ≥ 3 次", 25, {"event": "order", "within_days": 90, "op": "gte", "value": 3}),
        ("30 天未跟进", -10, {"field": "last_followed_at", "op": "before_days", "value": 30}),
    ]:
        ScoreSignal.objects.update_or_create(
            tenant_id=tenant_id, name=name, defaults={"points": points, "conditions": conds}
        )
    started = time.perf_counter()
    updated = services.scores_recompute(tenant_id=tenant_id)
    elapsed = time.perf_counter() - started
    log(f"scores recomputed for {updated} customers in {elapsed:.2f}s")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="per resolution scenario")
    parser.add_argument("--workers", type=int, default=2, help="resolving processes")
    args = parser.parse_args(argv)

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    ensure_database(url)
    setup_django(url)

    setup = build(args.customers)
    log(f"data: {counts(setup['tenant_id'])}")
    tags = auto_tag(setup)  # first: the segment below counts a tag the rules set
    seg = segment_count(setup)
    score_s = scoring(setup)
    single = resolve_rate(setup, args.customers, args.workers, args.seconds, batch=1)
    batched = resolve_rate(setup, args.customers, args.workers, args.seconds, batch=500)
    print(
        json.dumps(
            {
                "bench": "customers",
                "customers": args.customers,
                "segment_members": seg["narrow"]["members"],
                "segment_count_s": round(seg["narrow"]["median_s"], 4),
                "segment_count_cold_s": round(seg["narrow"]["cold_s"], 4),
                "broad_segment_members": seg["broad"]["members"],
                "broad_segment_count_s": round(seg["broad"]["median_s"], 4),
                "segment_goal_s": 1.0,
                "identities_per_minute": round(single["identities_per_minute"]),
                "batch_identities_per_minute": round(batched["identities_per_minute"]),
                "identities_goal_per_minute": 100_000,
                "auto_tag_s": round(tags["first_s"], 2),
                "auto_tag_second_run_s": round(tags["second_s"], 2),
                "auto_tag_goal_s": 60,
                "score_s": round(score_s, 2) if score_s is not None else None,
                "workers": args.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
