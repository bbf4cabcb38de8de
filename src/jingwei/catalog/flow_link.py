"""The after-sales SOP's parts steps: `reserve_parts` at dispatch and `consume_parts` at
completion. Registering replaces the deferred placeholders tickets put in their place (engine
actions overwrite); catalog is installed after tickets, so its ready() runs later."""

from __future__ import annotations

from typing import Any

from jingwei.flows import engine
from jingwei.flows.models import Instance

from .services.cases import consume_for_case, reserve_for_case


@engine.action("reserve_parts")
def reserve_parts(
    instance: Instance, node: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    return reserve_for_case(instance, params)


@engine.action("consume_parts")
def consume_parts(
    instance: Instance, node: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    return consume_for_case(instance, params)
