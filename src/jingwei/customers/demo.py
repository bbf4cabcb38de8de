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
    return created
