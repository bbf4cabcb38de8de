"""PII masking: the one place that decides how phone and ID numbers appear to a reader.

API schemas use the `MaskedPhone` / `MaskedIdNumber` types; exports call `present_*`. A reader holding
`customer.view_pii` sees the full value; everyone else sees 138****5678.
"""

from __future__ import annotations

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


def _actor_from(info: ValidationInfo) -> Actor | None:
    context = info.context or {}
    request = context.get("request")
    return getattr(request, "actor", None)


def _phone(value: Any, handler: Any, info: ValidationInfo) -> Any:
    return present_phone(handler(value), _actor_from(info))


def _id_number(value: Any, handler: Any, info: ValidationInfo) -> Any:
    return present_id_number(handler(value), _actor_from(info))


# Ninja validates responses with context={"request": request}; without one (no reader known),
# the value is masked: failing closed.
MaskedPhone = Annotated[str | None, WrapValidator(_phone)]
MaskedIdNumber = Annotated[str | None, WrapValidator(_id_number)]
