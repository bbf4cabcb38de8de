"""Reads over the engine's rows: per-node statistics of a version, with bottlenecks flagged."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from django.utils import timezone

from .models import ProcessVersion, Task, Token, TokenStatus
from .sla import duration


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def node_statistics(version: ProcessVersion) -> list[dict[str, Any]]:
    """For each node: how many passed, average / p50 / p90 seconds spent, the share of its tasks
    that ran past their SLA, and whether it is a bottleneck (average above its SLA target)."""
    spent: dict[str, list[float]] = defaultdict(list)
    for node_id, arrived, left in Token.objects.filter(
        instance__version=version, status=TokenStatus.DONE, left_at__isnull=False
    ).values_list("node_id", "arrived_at", "left_at"):
        if left is not None:
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
            }
        )
    return rows
