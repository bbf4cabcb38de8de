"""Spare-parts operations. Each top-level service is one transaction, checks catalog.manage (or
catalog.view for reads) over the rows it touches, and records an audit event. The flow steps
(cases) run inside the flow engine's transaction as the system."""

from .cases import case_lines, consume_for_case, reserve_for_case
from .common import MANAGE, VIEW, ShortOfStock
from .master import location_save, part_save, threshold_set, warehouse_save
from .nearest import reserve_for_engineer, warehouse_chain
from .reorder import ReorderSuggestion, reorder_suggestions
from .stock import (
    reservation_consume,
    reservation_release,
    stock_adjust,
    stock_issue,
    stock_receive,
    stock_reserve,
    stock_return,
    stock_take,
    stock_transfer,
)

__all__ = [
    "MANAGE",
    "VIEW",
    "ReorderSuggestion",
    "ShortOfStock",
    "case_lines",
    "consume_for_case",
    "location_save",
    "part_save",
    "reorder_suggestions",
    "reservation_consume",
    "reservation_release",
    "reserve_for_case",
    "reserve_for_engineer",
    "stock_adjust",
    "stock_issue",
    "stock_receive",
    "stock_reserve",
    "stock_return",
    "stock_take",
    "stock_transfer",
    "threshold_set",
    "warehouse_chain",
    "warehouse_save",
]
