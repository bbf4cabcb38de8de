"""Identity kinds: how each kind's value is normalised into the deterministic key, whether it takes
a namespace, and how it is shown to a reader who may not see PII.

The key of an identity is (kind, namespace, normalised value), unique per tenant among active
identities (see models.Identity). One normaliser per kind, pure and total: it returns the key's
value or raises `Invalid` naming the field, so the same input always gives the same key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import models

from jingwei.core.errors import Invalid
from jingwei.core.pii import mask_phone, may_view_pii

if TYPE_CHECKING:
    from jingwei.org.scope import Actor

VALUE_MAX = 200
NAMESPACE_MAX = 100


class IdentityKind(models.TextChoices):
    PHONE = "phone", "手机号"
    EMAIL = "email", "邮箱"
    WECOM = "wecom", "企业微信外部联系人"  # external_userid; namespace: the corp id, if several
    WECHAT_UNIONID = "wechat_unionid", "微信 UnionID"
    WECHAT_OPENID = "wechat_openid", "微信 OpenID"  # namespace: the app id (公众号/小程序)
    SHOP_BUYER = "shop_buyer", "店铺买家"  # namespace: the platform (taobao, jd, pdd, douyin…)
    OTHER = "other", "其他"


# Whether a kind's key takes a namespace: "none" (a phone is a phone, whoever tells us), "required"
# (an openid means nothing without its app id, a buyer id without its platform), or "optional".
NAMESPACE_RULE: dict[str, str] = {
    IdentityKind.PHONE: "none",
    IdentityKind.EMAIL: "none",
    IdentityKind.WECOM: "optional",
    IdentityKind.WECHAT_UNIONID: "optional",
    IdentityKind.WECHAT_OPENID: "required",
    IdentityKind.SHOP_BUYER: "required",
    IdentityKind.OTHER: "optional",
}

_PHONE_CHARS = re.compile(r"^\+?[\d\s().-]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_OPAQUE_ID = re.compile(r"^[A-Za-z0-9_@.:-]+$")
_NAMESPACE = re.compile(r"^[a-z0-9_.:-]+$")


def _text(value: str) -> str:
    """Full-width digits and letters to ASCII (NFKC), surrounding space trimmed, runs of space one."""
    return " ".join(unicodedata.normalize("NFKC", value).split())


def normalise_phone(value: str) -> str:
    """Digits only. A mainland number loses its country code (+86, 0086, or 86 before an 11-digit
    mobile); a mainland landline written with +86 gains the trunk 0 it is dialled with at home, so
    "+86 21 6234 5678" and "021-6234-5678" are one key. A number of another country keeps its
    code behind a "+" ("+65 9123 4567" → "+6591234567"), so it never equals a mainland number."""
    text = _text(value)
    if not _PHONE_CHARS.match(text):
        raise Invalid("手机号只能包含数字、空格、+、-、括号", code="invalid_phone", field="value")
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = digits[2:]
    prefix = ""
    if international and digits.startswith("86"):
        digits = digits[2:]
        if digits and not digits.startswith(("1", "0")):
            digits = "0" + digits
    elif international:
        prefix = "+"
    elif digits.startswith("861") and len(digits) == 13:
        digits = digits[2:]
    if not 5 <= len(digits) <= 15:
        raise Invalid("手机号应为 5—15 位数字", code="invalid_phone", field="value")
    return prefix + digits


def normalise_email(value: str) -> str:
    text = _text(value).lower()
    if not _EMAIL.match(text) or len(text) > 254:
        raise Invalid("邮箱格式不正确", code="invalid_email", field="value")
    return text


def normalise_opaque_id(value: str) -> str:
    """WeCom external_userid, WeChat unionid/openid: opaque ASCII ids, compared exactly."""
    text = _text(value)
    if not text or not _OPAQUE_ID.match(text):
        raise Invalid("编号只能包含字母、数字和 _ - . : @", code="invalid_identity", field="value")
    return text


def normalise_free_text(value: str) -> str:
    """Shop buyer names and other ids: any text (a Taobao nick may be Chinese), compared after
    NFKC and space folding, case kept (platforms treat case as significant)."""
    text = _text(value)
    if not text:
        raise Invalid("不能为空", code="required", field="value")
    return text


NORMALISERS: dict[str, Callable[[str], str]] = {
    IdentityKind.PHONE: normalise_phone,
    IdentityKind.EMAIL: normalise_email,
    IdentityKind.WECOM: normalise_opaque_id,
    IdentityKind.WECHAT_UNIONID: normalise_opaque_id,
    IdentityKind.WECHAT_OPENID: normalise_opaque_id,
    IdentityKind.SHOP_BUYER: normalise_free_text,
    IdentityKind.OTHER: normalise_free_text,
}


def normalise_namespace(kind: str, namespace: str) -> str:
    rule = NAMESPACE_RULE[kind]
    text = _text(namespace).lower()
    if rule == "none":
        if text:
            raise Invalid(
                f"{IdentityKind(kind).label}不带命名空间", code="no_namespace", field="namespace"
            )
        return ""
    if rule == "required" and not text:
        hint = "应用 AppID" if kind == IdentityKind.WECHAT_OPENID else "平台（如 taobao、jd）"
        raise Invalid(f"请填写命名空间：{hint}", code="namespace_required", field="namespace")
    if text and (not _NAMESPACE.match(text) or len(text) > NAMESPACE_MAX):
        raise Invalid(
            "命名空间只能包含小写字母、数字和 _ - . :", code="invalid_namespace", field="namespace"
        )
    return text


@dataclass(frozen=True)
class IdentityKey:
    """The deterministic key of an identity."""

    kind: str
    namespace: str
    value: str


@dataclass(frozen=True)
class IdentityInput:
    """An identity as a caller states it (before normalisation)."""

    kind: str
    value: str
    namespace: str = ""
    verified: bool = False
    source: str = ""


def identity_key(kind: str, value: str, namespace: str = "") -> IdentityKey:
    """The key for a stated identity, or Invalid naming `kind`, `value` or `namespace`."""
    if kind not in NORMALISERS:
        raise Invalid("不认识的身份类型", code="invalid_kind", field="kind")
    normalised = NORMALISERS[kind](value)
    if len(normalised) > VALUE_MAX:
        raise Invalid(f"身份值不能超过 {VALUE_MAX} 个字符", code="too_long", field="value")
    return IdentityKey(kind, normalise_namespace(kind, namespace), normalised)


# --- showing values ----------------------------------------------------------------------------


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}" if domain else mask_opaque(value)


def mask_opaque(value: str) -> str:
    """wm12************89: enough to tell two apart on screen, not enough to use."""
    if len(value) <= 4:
        return "*" * len(value)
    keep = 2 if len(value) < 12 else 4
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def mask_identity(kind: str, value: str) -> str:
    if kind == IdentityKind.PHONE:
        return mask_phone(value)
    if kind == IdentityKind.EMAIL:
        return mask_email(value)
    return mask_opaque(value)


def present_identity(kind: str, value: str, actor: Actor | None) -> str:
    """The value as `actor` may see it: in full with customer.view_pii, masked otherwise (and
    masked when the reader is unknown: failing closed)."""
    return value if may_view_pii(actor) else mask_identity(kind, value)
