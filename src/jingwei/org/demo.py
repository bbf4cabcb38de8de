"""Demo data: 经纬设备服务, a national equipment-service company (see JOURNEYS.md).

Idempotent: every row is looked up by its natural key first, so loading twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet

from jingwei.core.errors import DomainError

from .models import (
    DataScope,
    Department,
    Employee,
    Region,
    Role,
    RoleAssignment,
    RolePermission,
    Tenant,
    TreeNode,
)
from .permissions import PERMISSIONS
from .services import permission_catalogue_sync

DEMO_PASSWORD = "Jingwei@2026"
TENANT = {"slug": "jingwei-demo", "name": "经纬设备服务"}

# name, currency, timezone, children
REGIONS: list[tuple[str, str, str, list[Any]]] = [
    (
        "华东",
        "CNY",
        "Asia/Shanghai",
        [
            ("上海", "CNY", "Asia/Shanghai", [("浦东", "CNY", "Asia/Shanghai", [])]),
            ("杭州", "CNY", "Asia/Shanghai", []),
        ],
    ),
    (
        "华南",
        "CNY",
        "Asia/Shanghai",
        [("广州", "CNY", "Asia/Shanghai", []), ("深圳", "CNY", "Asia/Shanghai", [])],
    ),
    (
        "西南",
        "CNY",
        "Asia/Shanghai",
        [("成都", "CNY", "Asia/Shanghai", []), ("贵阳", "CNY", "Asia/Shanghai", [])],
    ),
    ("东南亚", "USD", "Asia/Singapore", []),
]

DEPARTMENTS: list[tuple[str, list[Any]]] = [
    ("总部", [("信息技术部", []), ("财务部", []), ("客服中心", [])]),
    ("华东服务部", []),
    ("华南服务部", []),
    ("西南服务部", []),
    ("海外事业部", []),
]

ROLES: dict[str, tuple[str, list[str]]] = {
    "系统管理员": ("全部权限，含安全告警", sorted(PERMISSIONS)),
    "区域经理": (
        "管理本区域的客户、工单与结算审核",
        [
            "org.view",
            "org.export",
            "audit.view",
            "customer.view",
            "customer.edit",
            "customer.export",
            "customer.view_pii",
            "customer.import",
            "customer.assign",
            "ticket.view",
            "ticket.create",
            "ticket.assign",
            "ticket.handle",
            "ticket.template_manage",
            "ticket.export",
            "opportunity.view",
            "opportunity.edit",
            "settlement.view",
            "settlement.review",
            "catalog.view",
            "flow.view",
            "flow.start",
            "flow.assign",
        ],
    ),
    "调度员": (
        "受理与派单",
        [
            "org.view",
            "customer.view",
            "ticket.view",
            "ticket.create",
            "ticket.assign",
            "catalog.view",
            "flow.view",
            "flow.start",
            "flow.assign",
        ],
    ),
    "工程师": (
        "处理自己的工单",
        ["org.view", "customer.view", "ticket.view", "ticket.handle", "catalog.view", "flow.view"],
    ),
    "客服坐席": (
        "接待客户、建单",
        [
            "org.view",
            "customer.view",
            "customer.edit",
            "ticket.view",
            "ticket.create",
            "ticket.handle",
            "opportunity.view",
            "opportunity.edit",
            "flow.view",
            "flow.start",
        ],
    ),
}

# Duty roles the shipped flows assign work to by name (jw:assignment role="客服" …): held beside
# each person's main role, so the demo's tickets reach real people at every step.
_DESK = ["org.view", "customer.view", "ticket.view", "ticket.handle", "flow.view", "flow.start"]
DUTY_ROLES: dict[str, tuple[str, list[str]]] = {
    "客服": ("受理、回访与客户确认", _DESK),
    "客诉主管": ("投诉升级的接手人", [*_DESK, "ticket.assign", "flow.assign"]),
    "课程顾问": ("试听预约与反馈", _DESK),
    "财务": ("退款", [*_DESK, "settlement.view"]),
    "质检员": ("验收", _DESK),
    "结算专员": ("工单结算", [*_DESK, "settlement.view"]),
    "调度主管": ("派单升级的接手人", [*_DESK, "ticket.assign", "flow.assign"]),
    "高级调度员": ("紧急工单派单", [*_DESK, "ticket.assign", "flow.assign"]),
}
# username, duty role, scope
DUTIES: list[tuple[str, str, str]] = [
    ("wangfang", "客服", DataScope.SELF),
    ("lina", "客服", DataScope.SELF),
    ("lina", "课程顾问", DataScope.SELF),
    ("guoxin", "客服", DataScope.SELF),
    ("gaoyan", "客诉主管", DataScope.DEPARTMENT),
    ("gaoyan", "财务", DataScope.TENANT),
    ("zhangwei", "质检员", DataScope.REGION),
    ("zhangwei", "结算专员", DataScope.REGION),
    ("huangmin", "质检员", DataScope.REGION),
    ("huangmin", "结算专员", DataScope.REGION),
    ("sunqiang", "质检员", DataScope.REGION),
    ("sunqiang", "结算专员", DataScope.REGION),
    ("linxue", "质检员", DataScope.REGION),
    ("linxue", "结算专员", DataScope.REGION),
    ("liuyang", "调度主管", DataScope.REGION),
    ("liuyang", "高级调度员", DataScope.REGION),
]

# username, name, employee_no, department, region, title, role, scope, manager username, phone
EMPLOYEES: list[tuple[str, str, str, str, str | None, str, str, str, str | None, str]] = [
    (
        "admin",
        "周志远",
        "E0001",
        "信息技术部",
        None,
        "系统管理员",
        "系统管理员",
        DataScope.TENANT,
        None,
        "13800010001",
    ),
    (
        "gaoyan",
        "高燕",
        "E0002",
        "客服中心",
        None,
        "客服主管",
        "客服坐席",
        DataScope.DEPARTMENT,
        "admin",
        "13800010002",
    ),
    (
        "wangfang",
        "王芳",
        "E0003",
        "客服中心",
        "上海",
        "客服专员",
        "客服坐席",
        DataScope.SELF,
        "gaoyan",
        "13800010003",
    ),
    (
        "lina",
        "李娜",
        "E0004",
        "客服中心",
        "杭州",
        "客服专员",
        "客服坐席",
        DataScope.SELF,
        "gaoyan",
        "13800010004",
    ),
    (
        "guoxin",
        "郭鑫",
        "E0005",
        "客服中心",
        "广州",
        "客服专员",
        "客服坐席",
        DataScope.SELF,
        "gaoyan",
        "13800010005",
    ),
    (
        "zhangwei",
        "张伟",
        "E0101",
        "华东服务部",
        "华东",
        "华东区域经理",
        "区域经理",
        DataScope.REGION,
        "admin",
        "13912340101",
    ),
    (
        "liuyang",
        "刘洋",
        "E0102",
        "华东服务部",
        "上海",
        "调度主管",
        "调度员",
        DataScope.REGION,
        "zhangwei",
        "13912340102",
    ),
    (
        "chenjing",
        "陈静",
        "E0103",
        "华东服务部",
        "上海",
        "调度员",
        "调度员",
        DataScope.REGION,
        "liuyang",
        "13912340103",
    ),
    (
        "yangfan",
        "杨帆",
        "E0104",
        "华东服务部",
        "浦东",
        "高级工程师",
        "工程师",
        DataScope.SELF,
        "liuyang",
        "13912340104",
    ),
    (
        "zhaolei",
        "赵磊",
        "E0105",
        "华东服务部",
        "杭州",
        "工程师",
        "工程师",
        DataScope.SELF,
        "zhangwei",
        "13912340105",
    ),
    (
        "huangmin",
        "黄敏",
        "E0201",
        "华南服务部",
        "华南",
        "华南区域经理",
        "区域经理",
        DataScope.REGION,
        "admin",
        "13712340201",
    ),
    (
        "zhoujie",
        "周杰",
        "E0202",
        "华南服务部",
        "广州",
        "调度员",
        "调度员",
        DataScope.REGION,
        "huangmin",
        "13712340202",
    ),
    (
        "wuhao",
        "吴昊",
        "E0203",
        "华南服务部",
        "广州",
        "工程师",
        "工程师",
        DataScope.SELF,
        "zhoujie",
        "13712340203",
    ),
    (
        "xuli",
        "徐丽",
        "E0204",
        "华南服务部",
        "深圳",
        "工程师",
        "工程师",
        DataScope.SELF,
        "zhoujie",
        "13712340204",
    ),
    (
        "sunqiang",
        "孙强",
        "E0301",
        "西南服务部",
        "西南",
        "西南区域经理",
        "区域经理",
        DataScope.REGION,
        "admin",
        "13612340301",
    ),
    (
        "maqian",
        "马倩",
        "E0302",
        "西南服务部",
        "成都",
        "调度员",
        "调度员",
        DataScope.REGION,
        "sunqiang",
        "13612340302",
    ),
    (
        "zhuming",
        "朱明",
        "E0303",
        "西南服务部",
        "成都",
        "工程师",
        "工程师",
        DataScope.SELF,
        "maqian",
        "13612340303",
    ),
    (
        "hujun",
        "胡军",
        "E0304",
        "西南服务部",
        "贵阳",
        "工程师",
        "工程师",
        DataScope.SELF,
        "maqian",
        "13612340304",
    ),
    (
        "linxue",
        "林雪",
        "E0401",
        "海外事业部",
        "东南亚",
        "东南亚区域经理",
        "区域经理",
        DataScope.REGION,
        "admin",
        "6591234401",
    ),
    (
        "hezhi",
        "何志",
        "E0402",
        "海外事业部",
        "东南亚",
        "工程师",
        "工程师",
        DataScope.SELF,
        "linxue",
        "6591234402",
    ),
]


def _tree(
    model: type[TreeNode], tenant: Tenant, spec: list[Any], parent: Any = None
) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for item in spec:
        name, children = item[0], item[-1]
        extra = {"currency": item[1], "timezone": item[2]} if model is Region else {}
        rows: QuerySet[Any] = model.objects.filter(tenant=tenant)
        node = rows.filter(parent=parent, name=name).first()
        if node is None:
            node = rows.create(tenant=tenant, parent=parent, name=name, **extra)
            node.save_path()
        nodes[name] = node
        nodes.update(_tree(model, tenant, children, node))
    return nodes


@transaction.atomic
def load_demo() -> Tenant:
    permission_catalogue_sync()
    tenant, _ = Tenant.objects.get_or_create(slug=TENANT["slug"], defaults={"name": TENANT["name"]})
    regions = _tree(Region, tenant, REGIONS)
    departments = _tree(Department, tenant, DEPARTMENTS)

    roles = {}
    for name, (description, codes) in {**ROLES, **DUTY_ROLES}.items():
        role, created = Role.objects.get_or_create(
            tenant=tenant, name=name, defaults={"description": description}
        )
        if created:
            RolePermission.objects.bulk_create(
                RolePermission(tenant=tenant, role=role, permission_id=code) for code in codes
            )
        roles[name] = role

    user_model = get_user_model()
    by_username: dict[str, Employee] = {}
    for username, name, no, dept, region, title, role_name, scope, manager, phone in EMPLOYEES:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model.objects.create_user(username=username, password=DEMO_PASSWORD)
        elif Employee.objects.filter(user=user).exclude(tenant=tenant).exists():
            # Never take over a real account that happens to share a demo login name.
            raise DomainError(
                f"登录名 {username} 已被其他企业使用，演示数据未加载", code="demo_username_taken"
            )
        employee, created = Employee.objects.get_or_create(
            tenant=tenant,
            employee_no=no,
            defaults={
                "user": user,
                "name": name,
                "title": title,
                "phone": phone,
                "email": f"{username}@jingwei-demo.cn",
                "department": departments[dept],
                "region": regions[region] if region else None,
                "manager": by_username.get(manager) if manager else None,
            },
        )
        by_username[username] = employee
        if created:
            RoleAssignment.objects.create(
                tenant=tenant, employee=employee, role=roles[role_name], scope=scope
            )
    for username, role_name, scope in DUTIES:
        RoleAssignment.objects.get_or_create(
            tenant=tenant,
            employee=by_username[username],
            role=roles[role_name],
            defaults={"scope": scope},
        )
    return tenant


def demo_logins() -> list[tuple[str, str, str]]:
    return [(u, n, f"{t}（{r}）") for u, n, _no, _d, _r, t, r, *_ in EMPLOYEES]
