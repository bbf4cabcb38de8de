"""Identity resolution: one profile per real customer, whichever channel registers them, and
look-alikes proposed to a person instead of merged silently."""

from __future__ import annotations

import pytest

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Conflict, Forbidden, Invalid
from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import (
    CandidateStatus,
    Customer,
    Identity,
    MergeCandidate,
)
from jingwei.org.scope import actor_for

from ..factories import grant
from .factories import make_customer

pytestmark = pytest.mark.django_db


def resolve(by, *identities, **profile):
    return services.customer_resolve(
        actor=actor_for(by), identities=list(identities), profile=profile
    )


def phone(value: str, **extra) -> IdentityInput:
    return IdentityInput("phone", value, **extra)


def test_a_new_phone_creates_a_customer_owned_by_whoever_registered_it(admin, org):
    result = resolve(admin, phone("138 1745 0021"), name="王建国", region_id=org.pudong.pk)

    assert result.outcome == "created"
    customer = result.customer
    assert (customer.name, customer.owner_id, customer.region_id) == (
        "王建国",
        admin.pk,
        org.pudong.pk,
    )
    assert list(customer.identities.values_list("kind", "value")) == [("phone", "13817450021")]
    event = AuditEvent.objects.get(action="customers.customer.created")
    assert event.subject_id == str(customer.pk)
    assert event.data["identities"][0]["value"] == "138****0021"  # the log never keeps it in full


def test_the_same_phone_written_differently_finds_the_same_customer_and_adds_new_identities(admin):
    first = resolve(admin, phone("13817450021"), name="王建国").customer

    again = resolve(
        admin,
        phone("+86 138-1745-0021"),
        IdentityInput("email", "WangJianguo@163.com"),
        IdentityInput("shop_buyer", "王建国的家电铺", "taobao"),
        name="王先生",
    )

    assert again.outcome == "matched"
    assert again.customer.pk == first.pk
    assert again.customer.name == "王建国"  # a later sighting never renames
    assert Customer.objects.count() == 1
    assert sorted(first.identities.values_list("kind", flat=True)) == [
        "email",
        "phone",
        "shop_buyer",
    ]
    assert [i.kind for i in again.seen] == ["phone"]


def test_a_later_sighting_fills_blank_fields_but_never_overwrites(admin, org):
    customer = make_customer(admin, "王建国", "13817450021", region_id=org.pudong.pk)

    resolve(
        admin,
        phone("13817450021"),
        name="王建国",
        region_id=org.guangzhou.pk,
        company_name="海鸥电器",
        source="淘宝",
    )

    customer.refresh_from_db()
    assert (customer.region_id, customer.company_name, customer.source) == (
        org.pudong.pk,
        "海鸥电器",
        "淘宝",
    )


def test_keys_of_two_customers_are_not_merged_silently_but_proposed(admin):
    by_phone = make_customer(admin, "王建国", "13817450021")
    by_mail = make_customer(admin, "王 先生", emails=("wang@163.com",))

    result = resolve(
        admin,
        phone("13817450021"),
        IdentityInput("email", "wang@163.com"),
        IdentityInput("wecom", "wmWang01"),
        name="王建国",
    )

    # attached to the first key's owner; the other keeps its e-mail
    assert result.customer.pk == by_phone.pk
    assert result.conflicts == [by_mail.pk]
    assert Identity.objects.get(kind="email").customer_id == by_mail.pk
    assert Identity.objects.get(kind="wecom").customer_id == by_phone.pk
    candidate = MergeCandidate.objects.get()
    assert (candidate.customer_id, candidate.other_id) == (by_phone.pk, by_mail.pk)
    assert (candidate.reason, candidate.score, candidate.status) == (
        "shared_identity",
        100,
        "proposed",
    )
    assert not Customer.objects.filter(merged_into__isnull=False).exists()


def test_a_namesake_whose_phone_differs_in_the_last_digit_is_proposed(admin):
    first = make_customer(admin, "王建国", "13817450021")

    second = make_customer(admin, "王建国", "13817450027")

    candidate = MergeCandidate.objects.get()
    assert (candidate.customer_id, candidate.other_id) == (first.pk, second.pk)
    assert (candidate.reason, candidate.score) == ("similar_phone", 90)
    assert candidate.detail["digits_differing"] == 1


def test_two_digits_apart_scores_lower_and_three_apart_is_not_proposed(admin):
    make_customer(admin, "李娜", "13900001111")
    make_customer(admin, "李娜", "13900001122")
    make_customer(admin, "李娜", "13900005555")  # 4 digits from both

    scores = sorted(MergeCandidate.objects.values_list("score", flat=True))
    assert scores == [80]


def test_same_name_alone_or_colleagues_at_one_company_are_not_proposed(admin):
    make_customer(admin, "张伟", "13800000001")
    make_customer(admin, "张伟", "13911112222")
    make_customer(admin, "李雷", "13700000001", company_name="海鸥电器")
    make_customer(admin, "韩梅梅", "13700000002", company_name="海鸥电器")

    assert not MergeCandidate.objects.exists()


def test_same_name_at_the_same_company_is_proposed(admin):
    make_customer(admin, "张丽华", "13601852266", company_name="上海海鸥电器有限公司")
    make_customer(admin, "张丽华", emails=("zlh@haiou.cn",), company_name="上海 海鸥电器")

    assert MergeCandidate.objects.get().reason == "same_name_company"


def test_two_spellings_of_one_company_are_proposed(admin):
    make_customer(admin, "上海海鸥电器有限公司", "021-62583300", kind="company")
    make_customer(admin, "上海海鸥电器（有限公司）", kind="company")
    make_customer(admin, "上海海鸥电器", kind="company", company_name="上海海鸥电器")

    assert set(MergeCandidate.objects.values_list("reason", flat=True)) == {"same_company"}
    assert MergeCandidate.objects.count() == 3  # every pair of the three


def test_a_rejected_pair_is_not_proposed_again(admin):
    make_customer(admin, "王建国", "13817450021")
    make_customer(admin, "王建国", "13817450027")
    candidate = MergeCandidate.objects.get()
    services.candidate_reject(actor=actor_for(admin), candidate_id=candidate.pk, note="两个人")

    resolve(admin, phone("13817450027"), IdentityInput("email", "w2@qq.com"), name="王建国")

    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.REJECTED
    assert MergeCandidate.objects.count() == 1


def test_a_bad_identity_is_refused_naming_its_place_and_nothing_is_written(admin):
    with pytest.raises(Invalid) as caught:
        resolve(admin, phone("13817450021"), IdentityInput("email", "not-an-email"), name="王建国")

    assert caught.value.field == "identities.1.value"
    assert not Customer.objects.exists()


def test_an_agent_is_told_a_customer_exists_elsewhere_without_being_shown_it(admin, shanghai_agent):
    grant(shanghai_agent, ["customer.edit"], "self")
    theirs = make_customer(admin, "王建国", "13817450021")
    events = AuditEvent.objects.count()

    with pytest.raises(Conflict) as caught:
        resolve(shanghai_agent, phone("13817450021"), IdentityInput("email", "w@qq.com"), name="王")

    assert caught.value.code == "customer_exists_elsewhere"
    assert str(theirs.pk) not in caught.value.message and "王建国" not in caught.value.message
    assert not Identity.objects.filter(kind="email").exists()
    assert AuditEvent.objects.count() == events


def test_an_agent_cannot_register_a_customer_for_someone_else_out_of_their_scope(
    shanghai_agent, admin
):
    grant(shanghai_agent, ["customer.edit"], "self")

    with pytest.raises(Forbidden) as caught:
        resolve(shanghai_agent, phone("13817450021"), name="王建国", owner_id=admin.pk)

    assert caught.value.code == "out_of_scope"
    assert not Customer.objects.exists()


def test_registering_needs_customer_edit(shanghai_agent):
    with pytest.raises(Forbidden) as caught:
        resolve(shanghai_agent, phone("13817450021"), name="王建国")
    assert caught.value.code == "permission_denied"


def test_the_system_registers_without_an_actor_for_a_tenant(org, admin):
    result = services.customer_resolve(
        actor=None,
        tenant_id=org.tenant.pk,
        identities=[IdentityInput("wecom", "wmSync01")],
        profile={"name": "企业微信联系人"},
        source="wecom",
    )

    assert result.customer.owner_id is None
    assert result.customer.identities.get().source == "wecom"
    assert AuditEvent.objects.get(action="customers.customer.created").actor_id is None


def test_identities_without_a_name_still_register_a_customer(admin):
    result = resolve(admin, IdentityInput("wecom", "wmNoName"))
    assert result.customer.name == "未命名客户"

    with pytest.raises(Invalid) as caught:
        resolve(admin)
    assert caught.value.field == "name"


def test_keys_are_per_tenant(admin, other_admin):
    ours = make_customer(admin, "王建国", "13817450021")
    theirs = make_customer(other_admin, "王建国", "13817450021")

    assert ours.pk != theirs.pk
    assert not MergeCandidate.objects.exists()
