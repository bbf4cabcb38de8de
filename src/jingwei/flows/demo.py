"""The definitions Jingwei ships as data: the after-sales SOP, the amount-based approval, and the
flows of the built-in ticket templates (shop return, course trial, complaint).
Published once per tenant; loading again changes nothing."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from .models import ProcessDefinition, ProcessVersion
from .spec import compile_spec

DATA = Path(__file__).parent / "data"
SHIPPED = {
    "after_sales": ("售后维修 SOP", "after_sales_sop.bpmn"),
    "approval_by_amount": ("按金额审批", "approval_by_amount.bpmn"),
    "shop_return": ("退换货", "shop_return.bpmn"),
    "course_trial": ("课程试听预约", "course_trial.bpmn"),
    "complaint": ("客户投诉", "complaint.bpmn"),
}


def shipped_xml(key: str) -> str:
    return (DATA / SHIPPED[key][1]).read_text(encoding="utf-8")


@transaction.atomic
def load_shipped_flows(tenant_id: int) -> list[ProcessVersion]:
    versions = []
    for key, (name, _file) in SHIPPED.items():
        xml = shipped_xml(key)
        definition, _ = ProcessDefinition.objects.get_or_create(
            tenant_id=tenant_id, key=key, defaults={"name": name, "draft_xml": xml}
        )
        version = definition.versions.order_by("-number").first()
        if version is None:
            version = ProcessVersion.objects.create(
                tenant_id=tenant_id,
                definition=definition,
                number=1,
                xml=xml,
                spec=compile_spec(xml),
                published_at=timezone.now(),
            )
        versions.append(version)
    return versions
