"""Customers for tests, made the way every channel makes them: through identity resolution."""

from __future__ import annotations

from typing import Any

from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for


def make_customer(
    by: Employee,
    name: str,
    *phones: str,
    emails: tuple[str, ...] = (),
    identities: tuple[IdentityInput, ...] = (),
    **profile: Any,
) -> Customer:
    """A customer registered by `by` (who needs customer.edit), with the phones and e-mails
    given. `profile` holds profile fields (region_id, owner_id, company_name, …)."""
    stated = [
        *(IdentityInput("phone", p) for p in phones),
        *(IdentityInput("email", e) for e in emails),
        *identities,
    ]
    result = services.customer_resolve(
        actor=actor_for(by), identities=stated, profile={"name": name, **profile}
    )
    return result.customer
