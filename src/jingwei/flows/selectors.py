"""Reads over the engine's rows: per-node statistics of a version, with bottlenecks flagged."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from django.utils import timezone

from jingwei.org.models import Region

from .calendar import working_time_between
from .calendars import calendar_for
from .models import ProcessVersion, Task, Token, TokenStatus
from .sla import duration


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _working_nodes(version: ProcessVersion) -> set[str]:
    """Nodes whose SLA counts working time (as `sla.due` reads it: working unless told)."""
    return {
        node_id
        for node_id, node in version.spec["nodes"].items()
        if node.get("sla") and node["sla"].get("calendar", "working") == "working"
    }


def node_statistics(version: ProcessVersion) -> list[dict[str, Any]]:
    """For each node: how many passed, average / p50 / p90 seconds spent, the share of its tasks
    that ran past their SLA, and whether it is a bottleneck (average above its SLA target).

    Time spent is measured as the node's SLA counts it, so that it compares with the target: in
    working time (the case's business calendar: region, parent regions, tenant default, built-in)
    for an SLA in working time, else wall-clock time; `time_basis` says which."""
    working = _working_nodes(version)
    rows_spent = list(
        Token.objects.filter(
            instance__version=version, status=TokenStatus.DONE, left_at__isnull=False
        ).values_list("node_id", "arrived_at", "left_at", "instance__region_id")
    )
    # The regions of the cases on working-time nodes, in one query; calendars are cached.
    region_ids = {r for node_id, _, _, r in rows_spent if node_id in working and r is not None}
    regions = Region.objects.in_bulk(region_ids) if region_ids else {}
    spent: dict[str, list[float]] = defaultdict(list)
    for node_id, arrived, left, region_id in rows_spent:
        if left is None:
            continue
        if node_id in working:
            region = regions.get(region_id) if region_id is not None else None
            calendar = calendar_for(version.tenant_id, region)
            spent[node_id].append(working_time_between(arrived, left, calendar).total_seconds())
        else:
            spent[node_id].append((left - arrived).total_seconds())
    now = timezone.now()
    overdue: dict[str, list[bool]] = defaultdict(list)
    for node_id, due, completed in Task.objects.filter(
        instance__version=version, due_at__isnull=False
    ).values_list("node_id", "due_at", "completed_at"):
        if due is not None:
            overdue[node_id].append((completed or now) > due)
    rows = []
    for node_id, node in version.spec["nodes"].items():
        values = sorted(spent.get(node_id, []))
        target = duration(node["sla"]["duration"]).total_seconds() if node.get("sla") else None
        average = statistics.fmean(values) if values else None
        late = overdue.get(node_id, [])
        rows.append(
            {
                "node_id": node_id,
                "name": node.get("name") or node_id,
                "type": node["type"],
                "count": len(values),
                "average_seconds": average,
                "p50_seconds": _percentile(values, 0.5) if values else None,
                "p90_seconds": _percentile(values, 0.9) if values else None,
                "target_seconds": target,
                "overdue_rate": (sum(late) / len(late)) if late else None,
                "bottleneck": bool(target and average and average > target),
                "time_basis": "working" if node_id in working else "calendar",
            }
        )
    return rows
