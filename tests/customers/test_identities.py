"""One normaliser per identity kind: the same customer written differently gives the same key,
and a value that cannot be a phone or an e-mail is refused naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.customers.identities import (
    IdentityKey,
    identity_key,
    mask_identity,
    normalise_phone,
    present_identity,
)
from jingwei.org.scope import Actor, Grant


@pytest.mark.parametrize(
    "written",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+8613812345678",
        "008613812345678",
        "8613812345678",
        "(138) 1234 5678",
        "１３８１２３４５６７８",  # full-width digits typed on a Chinese keyboard
    ],
)
def test_a_mainland_mobile_written_any_way_is_one_key(written: str) -> None:
    assert normalise_phone(written) == "13812345678"


def test_a_landline_with_and_without_the_country_code_is_one_key() -> None:
    assert normalise_phone("+86 21 6234 5678") == normalise_phone("021-6234-5678") == "02162345678"


def test_a_foreign_number_keeps_its_country_code_and_never_equals_a_mainland_one() -> None:
    assert normalise_phone("+65 9123 4567") == normalise_phone("0065 9123 4567") == "+6591234567"
    assert normalise_phone("+1 415 555 0100") != normalise_phone("14155550100")


@pytest.mark.parametrize("bad", ["abc", "138x1234", "123", "1" * 16, "+", "   "])
def test_a_value_that_is_not_a_phone_is_refused_naming_value(bad: str) -> None:
    with pytest.raises(Invalid) as caught:
        identity_key("phone", bad)
    assert caught.value.field == "value"


def test_emails_compare_case_insensitively_and_bad_ones_are_refused() -> None:
    assert identity_key("email", "  Wang.JianGuo@163.COM ") == IdentityKey(
        "email", "", "wang.jianguo@163.com"
    )
    with pytest.raises(Invalid) as caught:
        identity_key("email", "wang@")
    assert caught.value.field == "value"


def test_an_openid_needs_its_app_id_and_a_buyer_needs_its_platform() -> None:
    for kind in ("wechat_openid", "shop_buyer"):
        with pytest.raises(Invalid) as caught:
            identity_key(kind, "o123")
        assert (caught.value.field, caught.value.code) == ("namespace", "namespace_required")
    assert identity_key("shop_buyer", " 王建国的 家电铺 ", "TaoBao") == IdentityKey(
        "shop_buyer", "taobao", "王建国的 家电铺"
    )


def test_the_same_openid_in_two_apps_is_two_keys() -> None:
    assert identity_key("wechat_openid", "oAbc", "wx1") != identity_key(
        "wechat_openid", "oAbc", "wx2"
    )


def test_a_phone_or_email_takes_no_namespace() -> None:
    with pytest.raises(Invalid) as caught:
        identity_key("phone", "13812345678", "taobao")
    assert caught.value.code == "no_namespace"


def test_an_unknown_kind_is_refused_naming_kind() -> None:
    with pytest.raises(Invalid) as caught:
        identity_key("qq", "12345")
    assert caught.value.field == "kind"


def test_a_value_that_grows_past_the_limit_when_normalised_is_refused() -> None:
    # NFKC turns one ligature into 18 characters: the limit applies to what is stored.
    with pytest.raises(Invalid) as caught:
        identity_key("other", "\ufdfa" * 20)
    assert caught.value.code == "too_long"


@given(st.text(max_size=40))
def test_normalising_is_idempotent_for_every_kind(text: str) -> None:
    for kind, namespace in [
        ("phone", ""),
        ("email", ""),
        ("wecom", ""),
        ("wechat_openid", "wx1"),
        ("shop_buyer", "jd"),
        ("other", ""),
    ]:
        try:
            key = identity_key(kind, text, namespace)
        except Invalid:
            continue
        assert identity_key(kind, key.value, key.namespace) == key


def _actor(*codes: str) -> Actor:
    return Actor(1, 1, 1, "读者", grants=[Grant(c, "tenant") for c in codes])


def test_values_are_masked_unless_the_reader_may_see_pii() -> None:
    assert mask_identity("phone", "13812345678") == "138****5678"
    assert mask_identity("email", "wangjianguo@163.com") == "w***@163.com"
    assert mask_identity("wecom", "wmJwDemo0001WangJianguo") == "wmJw" + "*" * 15 + "nguo"
    assert present_identity("phone", "13812345678", _actor("customer.view")) == "138****5678"
    assert present_identity("phone", "13812345678", None) == "138****5678"
    assert present_identity("phone", "13812345678", _actor("customer.view_pii")) == "13812345678"
