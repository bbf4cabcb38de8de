"""The API root: one NinjaAPI, every module's router, one auth, one error convention."""

from __future__ import annotations

from ninja import NinjaAPI

from jingwei.audit.api import router as audit_router
from jingwei.core.api import install_error_handlers
from jingwei.customers.api import router as customers_router
from jingwei.flows.api import router as flows_router
from jingwei.notify.api import router as notify_router
from jingwei.org.api import router as org_router
from jingwei.org.auth import ActorAuth
from jingwei.org.auth_api import router as auth_router
from jingwei.tickets.api import router as tickets_router

api = NinjaAPI(
    title="经纬 SCRM API",
    version="1",
    description="所有接口按租户与数据范围隔离。错误统一为 {code, message, field}。",
    auth=ActorAuth(),
    urls_namespace="api",
    docs_url="/docs",
)
install_error_handlers(api)

api.add_router("/auth", auth_router)
api.add_router("/org", org_router)
api.add_router("/audit", audit_router)
api.add_router("/notify", notify_router)
api.add_router("/flows", flows_router)
api.add_router("", customers_router)  # its paths start with /customers
api.add_router("", tickets_router)  # /tickets, /opportunities, /public
