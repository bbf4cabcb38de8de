"""The customers' nightly run for one tenant: what has to happen because time passed, not
because someone did something."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from .events import events_purge_expired
from .pools import pools_return_stale, pools_warn_stale
from .scoring import scores_recompute
from .tag_rules import rules_run_all


def customers_daily(*, tenant_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Purge events past retention first (so rules count what is kept), return stale customers
    to their pools and warn the owners of those about to go, re-run the auto-tag rules (windows move with the clock: "3 visits in 3 days"
    stops holding without any new event) and recompute scores, which may read those tags.
    Each step commits on its own: a failure leaves the earlier steps done, and the next night
    runs them all again (each is idempotent)."""
    now = now or timezone.now()
    return {
        "events_purged": events_purge_expired(tenant_id=tenant_id, now=now),
        "returned_to_pool": pools_return_stale(tenant_id=tenant_id, now=now),
        "owners_warned": pools_warn_stale(tenant_id=tenant_id, now=now),
        "rules": rules_run_all(tenant_id=tenant_id, now=now),
        "scored": scores_recompute(tenant_id=tenant_id),
    }
