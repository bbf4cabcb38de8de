"""Demo customers of 经纬设备服务: about thirty across its regions, each with identities, the
王建国 of JOURNEYS.md §D (phone, WeCom contact, Taobao buyer name, e-mail on one profile) and his
look-alike, two spellings of one company (proposed for merging), and one merge already made that
can be undone.

Idempotent: a customer whose first identity is already registered is skipped, and the merge is
made once, so loading twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from jingwei.org.models import Department, Employee, Region
from jingwei.org.scope import actor_for

from .identities import IdentityInput, identity_key
from .models import Customer, Identity, MergeRecord
from .services import merge_in_transaction, resolve_in_transaction

P, E, W, U, OP, B = "phone", "email", "wecom", "wechat_unionid", "wechat_openid", "shop_buyer"
OFFICIAL_ACCOUNT = "wx5f3c2a9d8e7b6a10"  # the demo tenant's 公众号 app id

# region → the department that serves it
SERVICE_DEPARTMENT = {
    "华东": "华东服务部",
    "华南": "华南服务部",
    "西南": "西南服务部",
    "东南亚": "海外事业部",
}
TOP_REGION = {
    "上海": "华东",
    "浦东": "华东",
    "杭州": "华东",
    "广州": "华南",
    "深圳": "华南",
    "成都": "西南",
    "贵阳": "西南",
    "东南亚": "东南亚",
}

# name, kind, company, region, owner (username), level, source, identities (kind, value, namespace)
Spec = tuple[str, str, str, str, str, str, str, list[tuple[str, str, str]]]
CUSTOMERS: list[Spec] = [
    (
        "王建国",
        "person",
        "",
        "浦东",
        "wangfang",
        "vip",
        "服务邮箱",
        [
            (P, "138 1745 0021", ""),
            (W, "wmJwDemo0001WangJianguo", ""),
            (B, "王建国的家电铺", "taobao"),
            (E, "WangJianguo@163.com", ""),
        ],
    ),
    ("王建国", "person", "", "上海", "chenjing", "normal", "电话", [(P, "13817450027", "")]),
    (
        "李秀英",
        "person",
        "",
        "上海",
        "wangfang",
        "normal",
        "企业微信",
        [(P, "13916620318", ""), (W, "wmJwDemo0002LiXiuying", "")],
    ),
    (
        "张丽华",
        "person",
        "上海海鸥电器有限公司",
        "上海",
        "liuyang",
        "vip",
        "展会",
        [(P, "13601852266", ""), (E, "zhang.lihua@haiou-dq.cn", "")],
    ),
    (
        "上海海鸥电器有限公司",
        "company",
        "上海海鸥电器有限公司",
        "上海",
        "zhangwei",
        "vip",
        "展会",
        [(P, "021-6258 3300", ""), (E, "service@haiou-dq.cn", "")],
    ),
    (
        "上海海鸥电器",
        "company",
        "上海海鸥电器",
        "浦东",
        "chenjing",
        "normal",
        "电话",
        [(P, "+86 21 5888 1200", "")],
    ),
    (
        "刘德明",
        "person",
        "",
        "浦东",
        "yangfan",
        "normal",
        "公众号",
        [(P, "15021937745", ""), (OP, "oJwDemo_LiuDeming_01", OFFICIAL_ACCOUNT)],
    ),
    (
        "赵敏",
        "person",
        "",
        "浦东",
        "wangfang",
        "potential",
        "小程序",
        [(U, "oUnionJwDemoZhaoMin01", ""), (OP, "oJwDemo_ZhaoMin_01", OFFICIAL_ACCOUNT)],
    ),
    (
        "孙浩然",
        "person",
        "",
        "杭州",
        "lina",
        "normal",
        "企业微信",
        [(P, "18657102233", ""), (W, "wmJwDemo0003SunHaoran", "")],
    ),
    (
        "周婷",
        "person",
        "",
        "杭州",
        "lina",
        "vip",
        "天猫",
        [(P, "13738016690", ""), (B, "tingting_zhou88", "tmall")],
    ),
    (
        "杭州西溪教育科技有限公司",
        "company",
        "杭州西溪教育科技有限公司",
        "杭州",
        "zhaolei",
        "normal",
        "官网",
        [(P, "0571-8802 1166", ""), (E, "contact@xixi-edu.cn", "")],
    ),
    (
        "吴芳",
        "person",
        "杭州西溪教育科技有限公司",
        "杭州",
        "lina",
        "normal",
        "官网",
        [(P, "13867451120", ""), (E, "wufang@xixi-edu.cn", "")],
    ),
    (
        "郑志强",
        "person",
        "",
        "上海",
        "liuyang",
        "normal",
        "京东",
        [(P, "13501789934", ""), (B, "jd_zhengzq", "jd")],
    ),
    (
        "陈晓东",
        "person",
        "",
        "上海",
        "wangfang",
        "normal",
        "企业微信",
        [(W, "wmJwDemo0004ChenXiaodong", ""), (U, "oUnionJwDemoChenXD01", "")],
    ),
    (
        "陈晓东",
        "person",
        "",
        "上海",
        "wangfang",
        "normal",
        "电话",
        [(P, "13764128850", ""), (E, "chenxd@qq.com", "")],
    ),
    (
        "黄丽",
        "person",
        "",
        "广州",
        "guoxin",
        "vip",
        "抖音",
        [(P, "13926075512", ""), (B, "黄丽爱生活", "douyin")],
    ),
    (
        "林国栋",
        "person",
        "",
        "广州",
        "guoxin",
        "normal",
        "企业微信",
        [(P, "13802218876", ""), (W, "wmJwDemo0005LinGuodong", "")],
    ),
    (
        "广州珠江餐饮管理有限公司",
        "company",
        "广州珠江餐饮管理有限公司",
        "广州",
        "huangmin",
        "vip",
        "渠道代理",
        [(P, "020-3862 7700", ""), (E, "it@zhujiang-catering.cn", "")],
    ),
    (
        "何晓燕",
        "person",
        "广州珠江餐饮管理有限公司",
        "广州",
        "zhoujie",
        "normal",
        "渠道代理",
        [(P, "13660453381", "")],
    ),
    (
        "谢伟",
        "person",
        "",
        "深圳",
        "xuli",
        "normal",
        "拼多多",
        [(P, "13528846607", ""), (B, "xiewei_sz", "pdd")],
    ),
    (
        "深圳前海智联科技有限公司",
        "company",
        "深圳前海智联科技有限公司",
        "深圳",
        "huangmin",
        "normal",
        "官网",
        [(P, "0755-8666 2019", ""), (E, "ops@qh-zhilian.com", "")],
    ),
    (
        "邓雪梅",
        "person",
        "",
        "深圳",
        "guoxin",
        "potential",
        "公众号",
        [(OP, "oJwDemo_DengXuemei_01", OFFICIAL_ACCOUNT)],
    ),
    (
        "杨帆",
        "person",
        "",
        "成都",
        "maqian",
        "normal",
        "电话",
        [(P, "13908176634", ""), (E, "yangfan.cd@163.com", "")],
    ),
    (
        "罗静",
        "person",
        "",
        "成都",
        "maqian",
        "vip",
        "企业微信",
        [(P, "18982045517", ""), (W, "wmJwDemo0006LuoJing", "")],
    ),
    (
        "成都天府连锁超市有限公司",
        "company",
        "成都天府连锁超市有限公司",
        "成都",
        "sunqiang",
        "vip",
        "渠道代理",
        [(P, "028-8555 6012", ""), (E, "purchase@tianfu-mart.cn", "")],
    ),
    (
        "唐建华",
        "person",
        "成都天府连锁超市有限公司",
        "成都",
        "zhuming",
        "normal",
        "渠道代理",
        [(P, "13540219983", "")],
    ),
    (
        "潘玉兰",
        "person",
        "",
        "贵阳",
        "hujun",
        "normal",
        "电话",
        [(P, "13985117240", "")],
    ),
    (
        "贵州黔味食品有限公司",
        "company",
        "贵州黔味食品有限公司",
        "贵阳",
        "sunqiang",
        "normal",
        "展会",
        [(P, "0851-8582 3300", ""), (E, "sales@qianwei-food.cn", "")],
    ),
    (
        "Tan Wei Ming",
        "person",
        "Lion City Facilities Pte Ltd",
        "东南亚",
        "linxue",
        "vip",
        "官网",
        [(P, "+65 9123 4567", ""), (E, "weiming.tan@lioncity-fm.sg", "")],
    ),
    (
        "Lion City Facilities Pte Ltd",
        "company",
        "Lion City Facilities Pte Ltd",
        "东南亚",
        "linxue",
        "normal",
        "官网",
        [(P, "+65 6222 8800", ""), (E, "helpdesk@lioncity-fm.sg", "")],
    ),
    (
        "Nguyen Thi Lan",
        "person",
        "",
        "东南亚",
        "hezhi",
        "normal",
        "Shopee",
        [(P, "+84 90 312 4455", ""), (B, "lan.nguyen.hcm", "shopee")],
    ),
]

# The second 陈晓东 (registered by phone) is the same man as the first (his WeCom contact):
# merged into the first, so the demo has a merge to look at and undo.
MERGED = ("陈晓东", "13764128850", "wmJwDemo0004ChenXiaodong")


def _key_taken(tenant_id: int, kind: str, value: str, namespace: str) -> bool:
    key = identity_key(kind, value, namespace)
    return Identity.objects.filter(
        tenant_id=tenant_id, kind=key.kind, namespace=key.namespace, value=key.value
    ).exists()


def _owner_of(tenant_id: int, identity: tuple[str, str, str]) -> Customer:
    key = identity_key(*identity)
    return Identity.objects.get(
        tenant_id=tenant_id, kind=key.kind, namespace=key.namespace, value=key.value
    ).customer


@transaction.atomic
def load_demo_customers(tenant_id: int) -> list[Customer]:
    """Register the demo customers (as the system, through identity resolution, so the look-alikes
    are proposed as they would be in real use) and make the one demo merge."""
    regions = {r.name: r for r in Region.objects.filter(tenant_id=tenant_id)}
    departments = {d.name: d for d in Department.objects.filter(tenant_id=tenant_id)}
    people = {
        e.user.username: e
        for e in Employee.objects.filter(tenant_id=tenant_id).select_related("user")
    }
    created = []
    for name, kind, company, region, owner, level, source, identities in CUSTOMERS:
        if _key_taken(tenant_id, *identities[0]):
            continue
        profile: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "company_name": company,
            "region_id": regions[region].pk,
            "department_id": departments[SERVICE_DEPARTMENT[TOP_REGION[region]]].pk,
            "owner_id": people[owner].pk,
            "level": level,
            "source": source,
        }
        result = resolve_in_transaction(
            actor=None,
            tenant_id=tenant_id,
            identities=[
                IdentityInput(k, v, ns, verified=k != B, source="demo") for k, v, ns in identities
            ],
            profile=profile,
        )
        created.append(result.customer)

    name, phone, wecom = MERGED
    duplicate = _owner_of(tenant_id, (P, phone, ""))
    keeper = _owner_of(tenant_id, (W, wecom, ""))
    # Made once: not again after an undo either (a record into the keeper exists then).
    if keeper != duplicate and not MergeRecord.objects.filter(target=keeper).exists():
        admin = people["admin"]
        merge_in_transaction(
            actor=actor_for(admin),
            target_id=keeper.pk,
            source_id=duplicate.pk,
            reason=f"{name}：企业微信联系人与电话登记为同一人",
        )
    demo_tags(tenant_id)  # tags, rules and the behaviour events they read
    demo_score_signals(tenant_id)  # last: it scores what the steps above loaded
    return created


# --- demo tags, auto-tag rules and behaviour events (tags & events) --------------------------

# group, single choice?, tags (name, colour)
DEMO_TAG_GROUPS: list[tuple[str, bool, list[tuple[str, str]]]] = [
    ("客户价值", True, [("高价值", "#F56C6C"), ("中价值", "#E6A23C"), ("低价值", "#909399")]),
    ("客户行为", False, [("高频用户", "#67C23A"), ("潜在流失客户", "#F56C6C")]),
    ("兴趣", False, [("空调", ""), ("冰箱", ""), ("洗衣机", ""), ("热水器", "")]),
]
# rule name, tag (in 客户行为), conditions
DEMO_TAG_RULES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "潜在流失客户",
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
    ("高频用户", "高频用户", {"event": "order", "within_days": 90, "op": "gte", "value": 3}),
]
# whose (identity), event id, kind, channel, days ago, title, amount
DEMO_EVENTS: list[tuple[tuple[str, str, str], str, str, str, float, str, str | None]] = [
    ((P, "138 1745 0021", ""), "demo:wjg:mail:1", "mail", "email", 40, "来信咨询空调保养", None),
    (
        (P, "138 1745 0021", ""),
        "demo:wjg:order:1",
        "order",
        "taobao",
        80,
        "淘宝订单：空调清洗服务",
        "199.00",
    ),
    (
        (P, "138 1745 0021", ""),
        "demo:wjg:order:2",
        "order",
        "taobao",
        45,
        "淘宝订单：滤网 ×2",
        "58.00",
    ),
    (
        (P, "138 1745 0021", ""),
        "demo:wjg:order:3",
        "order",
        "taobao",
        12,
        "淘宝订单：延保一年",
        "299.00",
    ),
    ((P, "138 1745 0021", ""), "demo:wjg:survey:1", "survey", "wecom", 10, "回访满意度 5 分", None),
    (
        (U, "oUnionJwDemoZhaoMin01", ""),
        "demo:zm:view:1",
        "page_view",
        "miniprogram",
        2.5,
        "浏览：空调清洗套餐",
        None,
    ),
    (
        (U, "oUnionJwDemoZhaoMin01", ""),
        "demo:zm:view:2",
        "page_view",
        "miniprogram",
        1.5,
        "浏览：空调清洗套餐",
        None,
    ),
    (
        (U, "oUnionJwDemoZhaoMin01", ""),
        "demo:zm:view:3",
        "page_view",
        "miniprogram",
        0.5,
        "浏览：以旧换新活动",
        None,
    ),
    (
        (B, "tingting_zhou88", "tmall"),
        "demo:zt:order:1",
        "order",
        "tmall",
        60,
        "天猫订单：净水器滤芯",
        "129.00",
    ),
    (
        (B, "tingting_zhou88", "tmall"),
        "demo:zt:order:2",
        "order",
        "tmall",
        20,
        "天猫订单：净水器滤芯",
        "129.00",
    ),
]
# whose (identity), tags a person chose
DEMO_MANUAL_TAGS: list[tuple[tuple[str, str, str], list[str]]] = [
    ((P, "138 1745 0021", ""), ["高价值", "空调"]),
    ((B, "tingting_zhou88", "tmall"), ["中价值"]),
]


@transaction.atomic
def demo_tags(tenant_id: int) -> None:
    """The demo tag catalogue, the two shipped auto-tag rules, and event histories that set them
    off: 王建国's mail, three Taobao orders in 90 days (高频用户, JOURNEYS.md §D3) and a survey;
    赵敏's three mini-program visits without an order (潜在流失客户); 周婷's two orders (not yet
    高频用户). Events go through the ingest, so the rules tag on arrival. Call it after
    `load_demo_customers`; loading twice changes nothing (existing rows and events are skipped)."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from .models import CustomerEvent, Tag, TagGroup, TagRule
    from .services.events import EventInput, ingest_in_transaction
    from .services.tagging import tags_set_in_transaction

    admin = actor_for(Employee.objects.get(tenant_id=tenant_id, user__username="admin"))
    tags: dict[str, Tag] = {}
    for sort, (group_name, single, names) in enumerate(DEMO_TAG_GROUPS):
        group, _ = TagGroup.objects.get_or_create(
            tenant_id=tenant_id,
            name=group_name,
            defaults={"choice": "single" if single else "multi", "sort": sort},
        )
        for tag_sort, (name, color) in enumerate(names):
            tags[name], _ = Tag.objects.get_or_create(
                tenant_id=tenant_id,
                group=group,
                name=name,
                defaults={"color": color, "sort": tag_sort},
            )
    for name, tag, conditions in DEMO_TAG_RULES:
        TagRule.objects.get_or_create(
            tenant_id=tenant_id,
            name=name,
            defaults={
                "tag": tags[tag],
                "conditions": conditions,
                "created_by_id": admin.employee_id,
            },
        )
    for who, chosen in DEMO_MANUAL_TAGS:
        tags_set_in_transaction(
            actor=admin,
            customer_ids=[_owner_of(tenant_id, who).pk],
            add_tag_ids=[tags[n].pk for n in chosen],
        )
    now = timezone.now()
    stored = set(
        CustomerEvent.objects.filter(
            tenant_id=tenant_id, event_id__in=[e[1] for e in DEMO_EVENTS]
        ).values_list("event_id", flat=True)
    )
    ingest_in_transaction(
        actor=admin,
        events=[
            EventInput(
                event_id=event_id,
                kind=kind,
                channel=channel,
                occurred_at=now - timedelta(days=days_ago),
                title=title,
                amount=Decimal(amount) if amount is not None else None,
                customer_id=_owner_of(tenant_id, who).pk,
            )
            for who, event_id, kind, channel, days_ago, title, amount in DEMO_EVENTS
            if event_id not in stored
        ],
        now=now,
    )


# --- demo score signals (segments & scoring) -------------------------------------------------

# name, points, conditions: the score a service business reads first
DEMO_SCORE_SIGNALS: list[tuple[str, int, dict[str, Any]]] = [
    ("VIP 客户", 30, {"field": "level", "op": "in", "value": ["vip"]}),
    ("近 90 天下单 3 次及以上", 25, {"event": "order", "within_days": 90, "op": "gte", "value": 3}),
    (
        "近一年消费满 500 元",
        15,
        {"event": "order", "within_days": 365, "measure": "amount", "op": "gte", "value": "500"},
    ),
    ("30 天未跟进", -10, {"not": {"field": "last_followed_at", "op": "within_days", "value": 30}}),
]


def demo_score_signals(tenant_id: int) -> None:
    """The shipped score signals, and every demo customer scored by them (王建国: VIP, three
    Taobao orders worth 556 元 in 90 days, no follow-up yet: 30 + 25 + 15 - 10 = 60). Runs in
    the caller's transaction; loading twice changes nothing (existing signals are kept, and only
    scores that change are written)."""
    from .models import ScoreSignal
    from .services.scoring import scores_refresh_in_transaction

    for sort, (name, points, conditions) in enumerate(DEMO_SCORE_SIGNALS):
        ScoreSignal.objects.get_or_create(
            tenant_id=tenant_id,
            name=name,
            defaults={"points": points, "conditions": conditions, "sort": sort},
        )
    scores_refresh_in_transaction(tenant_id=tenant_id)
