"""PII masking: the one place that decides how phone and ID numbers appear to a reader.

API schemas use the `MaskedPhone` / `MaskedIdNumber` types; exports call `present_*`. A reader holding
`customer.view_pii` sees the full value; everyone else sees 138****5678.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ValidationInfo, WrapValidator

if TYPE_CHECKING:
    from jingwei.org.scope import Actor

VIEW_PII = "customer.view_pii"


def mask_phone(value: str) -> str:
    """138****5678 for a mainland mobile; the same idea (keep 3 + 4) for other lengths."""
    digits = value.strip()
    if len(digits) <= 4:
        return "*" * len(digits)
    if len(digits) < 11:
        # Short numbers (landlines, extensions) would give too much away with 3 + 4 kept.
        return digits[:1] + "*" * (len(digits) - 3) + digits[-2:]
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_id_number(value: str) -> str:
    """110101********1234: region code and the last four stay, the birth date does not."""
    text = value.strip()
    if len(text) <= 8:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def may_view_pii(actor: Actor | None) -> bool:
    return actor is not None and actor.has_perm(VIEW_PII)


def present_phone(value: str | None, actor: Actor | None) -> str | None:
    if not value or may_view_pii(actor):
        return value
    return mask_phone(value)


def present_id_number(value: str | None, actor: Actor | None) -> str | None:
    if not value or may_view_pii(actor):
        return value
    return mask_id_number(value)


# Keys under which snapshots (audit before/after, event payloads) carry phone and ID numbers.
PHONE_KEYS = frozenset({"phone", "mobile", "telephone"})
ID_NUMBER_KEYS = frozenset({"id_number", "id_card"})


def present_snapshot(data: Any, actor: Actor | None) -> Any:
    """A JSON snapshot with phone and ID values masked for readers without customer.view_pii."""
    if may_view_pii(actor):
        return data
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in PHONE_KEYS and isinstance(value, str):
                out[key] = present_phone(value, None)
            elif key in ID_NUMBER_KEYS and isinstance(value, str):
                out[key] = present_id_number(value, None)
            else:
                out[key] = present_snapshot(value, None)
        return out
    if isinstance(data, list):
        return [present_snapshot(v, None) for v in data]
    return data


def _actor_from(info: ValidationInfo) -> Actor | None:
    context = info.context or {}
    request = context.get("request")
    return getattr(request, "actor", None)


def _phone(value: Any, handler: Any, info: ValidationInfo) -> Any:
    return present_phone(handler(value), _actor_from(info))


def _id_number(value: Any, handler: Any, info: ValidationInfo) -> Any:
    return present_id_number(handler(value), _actor_from(info))


_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 -]{4,19}")


def _contact(value: Any, handler: Any, info: ValidationInfo) -> Any:
    # An address that may be a phone number or an e-mail (a delivery's): only numbers are PII here.
    shown = handler(value)
    if isinstance(shown, str) and _PHONE_LIKE.fullmatch(shown):
        return present_phone(shown, _actor_from(info))
    return shown


def _snapshot(value: Any, handler: Any, info: ValidationInfo) -> Any:
    return present_snapshot(handler(value), _actor_from(info))


# Ninja validates responses with context={"request": request}; without one (no reader known),
# the value is masked: failing closed.
MaskedPhone = Annotated[str | None, WrapValidator(_phone)]
MaskedIdNumber = Annotated[str | None, WrapValidator(_id_number)]
MaskedSnapshot = Annotated[Any, WrapValidator(_snapshot)]
MaskedContact = Annotated[str, WrapValidator(_contact)]
