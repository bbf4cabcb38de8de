"""Tickets created at the same moment get distinct numbers: real threads, each with its own
database connection (PostgreSQL; SQLite takes the write lock when a transaction starts, so its
writers never overlap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jingwei.flows.models import Instance
from jingwei.org.scope import actor_for
from jingwei.tickets import services
from jingwei.tickets.models import Source, Ticket, TicketCounter

from ..concurrency import run_together
from .test_tickets import answers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="overlapping writers are a PostgreSQL property (SQLite serialises them)",
    ),
]

THREADS = 8


def _creator(org: Any, admin: Any, n: int, **extra: Any) -> Callable[[], Any]:
    def create() -> Any:
        return services.ticket_create(
            actor=actor_for(admin),
            new=services.NewTicket(
                template_key="after_sales_repair",
                answers=answers(org, contact_phone=f"1390000{n:04d}"),
                source=Source.API,
                **extra,
            ),
        )

    return create


def test_tickets_created_at_once_get_distinct_numbers(org, admin, shipped):
    # No counter row for today yet: the threads also race to make it.
    assert not TicketCounter.objects.exists()

    results = run_together(*(_creator(org, admin, n) for n in range(THREADS)))

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    numbers = sorted(r.ticket.number for r in results)
    prefix = f"GD{timezone.localdate():%Y%m%d}"
    assert numbers == [f"{prefix}-{n:04d}" for n in range(1, THREADS + 1)]
    assert Ticket.objects.count() == THREADS
    assert Instance.objects.count() == THREADS
    assert TicketCounter.objects.get().last == THREADS


def test_the_same_entry_sent_at_once_makes_one_ticket(org, admin, shipped):
    results = run_together(*(_creator(org, admin, 1, source_key="shop-event-42") for _ in range(4)))

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert len({r.ticket.pk for r in results}) == 1
    assert sorted(r.created for r in results) == [False, False, False, True]
    assert Ticket.objects.count() == 1
    assert Instance.objects.count() == 1
