"""The catalogue of permission codes. Roles are named sets of these; modules add theirs here.

Codes are shared reference data (the `org.Permission` table is synced from this list after
every migrate), so a role in any tenant can hold any of them.
"""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    # org and security
    "org.view": "查看组织架构与员工",
    "org.manage": "管理组织架构、员工、角色与授权",
    "org.export": "导出员工名单",
    "audit.view": "查看审计日志",
    "security.alert": "接收安全告警（导出异常、账号冻结）",
    # customers
    "customer.view": "查看客户",
    "customer.edit": "编辑客户",
    "customer.export": "导出客户",
    "customer.view_pii": "查看完整手机号与证件号",
    "customer.import": "导入客户",
    "customer.assign": "分配客户、在职转接与离职继承",
    "customer.manage": "管理标签、自动标签规则、分群、公海与评分设置",
    # tickets
    "ticket.view": "查看工单",
    "ticket.create": "创建工单",
    "ticket.handle": "处理工单任务",
    "ticket.assign": "派单与改派",
    "ticket.template_manage": "管理工单模板",
    "ticket.export": "导出工单",
    "ticket.manage": "管理工单队列、路由规则与服务邮箱",
    "opportunity.view": "查看商机",
    "opportunity.edit": "创建与编辑商机",
    # flows
    "flow.view": "查看流程实例、任务与统计",
    "flow.start": "发起流程、向流程发送消息",
    "flow.assign": "改派他人的流程任务",
    "flow.manage": "设计、发布与迁移流程",
    # settlement
    "settlement.view": "查看结算",
    "settlement.review": "审核结算单",
    "settlement.approve": "审批结算单",
    "settlement.pay": "标记结算单已付款",
    "settlement.plan_manage": "管理价格与分佣方案",
    # parts and projects
    "catalog.view": "查看项目与备件",
    "catalog.manage": "管理项目与备件库存",
    # notifications
    "notify.manage": "管理通知规则与值班表",
}
