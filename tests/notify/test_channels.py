"""The outbound channels, each sending over real HTTP (real SMTP for mail) on 127.0.0.1 to a
simulator of its provider's contract (see jingwei.notify.simulators and conftest.py).

These prove our side follows the providers' documented contracts as the simulators read them;
no test here talks to Aliyun, WeCom, DingTalk or a real mail provider."""

from __future__ import annotations

import email
import email.policy
import io
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pydantic
import pytest
from django.core import mail as django_mail
from django.core.management import load_command_class
from django.core.management.base import OutputWrapper
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.notify.channels import CHANNELS, DeliveryError, Message, channel_named
from jingwei.notify.channels import dingtalk as dingtalk_mod
from jingwei.notify.channels import sms as sms_mod
from jingwei.notify.channels import webhook as webhook_mod
from jingwei.notify.channels.dingtalk import DingTalkSettings
from jingwei.notify.channels.email import EmailSettings
from jingwei.notify.channels.sms import SmsSettings
from jingwei.notify.channels.webhook import WebhookSettings
from jingwei.notify.channels.wecom import WeComSettings
from jingwei.notify.simulators import (
    AliyunSmsSimulator,
    Simulators,
    WebhookReceiver,
    aliyun_rpc_signature,
    free_port,
    serve,
)

from .conftest import (
    MAIL_PASSWORD,
    MAIL_USER,
    ROBOT_SECRET,
    SMS_KEY_ID,
    SMS_SECRET,
    WEBHOOK_SECRET,
    Clock,
    MailServer,
    Provider,
)

email_channel = channel_named("email")
sms_channel = channel_named("sms")
wecom_channel = channel_named("wecom")
dingtalk_channel = channel_named("dingtalk")
webhook_channel = channel_named("webhook")


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "delivery_uid": str(uuid.uuid4()),
        "tenant_id": 7,
        "event": "ticket.overdue",
        "severity": "urgent",
        "title": "工单 GD-20240501-0007 已超时",
        "text": "客户王建国的空调维修工单已超过承诺时限 2 小时，请尽快处理。",
        "recipient_name": "张伟",
    }
    fields.update(overrides)
    return Message(**fields)


def refused(send: Any, *args: Any) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        send(*args)
    return caught.value


# --- the registry ---------------------------------------------------------------------------


def test_the_five_outbound_channels_are_registered_as_the_runner_expects():
    shape = {
        name: (CHANNELS[name].address_kind, CHANNELS[name].per_recipient)
        for name in ("email", "sms", "wecom", "dingtalk", "webhook")
    }
    assert shape == {
        "email": ("email", True),
        "sms": ("phone", True),
        "wecom": ("wecom_userid", True),
        "dingtalk": ("", False),
        "webhook": ("", True),
    }
    # Every declared secret is a real settings field (or the console would show it in clear).
    for name in shape:
        channel = CHANNELS[name]
        assert set(channel.secret_fields) <= set(channel.settings_model.model_fields), name


def test_settings_default_to_the_real_provider_endpoints_and_refuse_unknown_keys():
    assert SmsSettings(access_key_id="a", access_key_secret="b", sign_name="c").endpoint == (
        "https://dysmsapi.aliyuncs.com/"
    )
    assert WeComSettings(corp_id="a", corp_secret="b", agent_id=1).api_base == (
        "https://qyapi.weixin.qq.com"
    )
    assert DingTalkSettings(access_token="t").robot_url == "https://oapi.dingtalk.com/robot/send"
    with pytest.raises(pydantic.ValidationError):
        WebhookSettings(url="https://example.com/hook", secret="x" * 16, retries=3)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        EmailSettings(host="smtp.example.com", use_tls=True, use_ssl=True)


# --- e-mail ---------------------------------------------------------------------------------


def smtp_settings(server: MailServer, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "username": MAIL_USER,
        "password": MAIL_PASSWORD,
        "from_address": "经纬通知 <notify@jingwei.example>",
        "timeout_seconds": 5,
        **overrides,
    }


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_mail_arrives_with_its_chinese_subject_and_both_parts(mail_server):
    msg = message(
        address="zhang.wei@example.com",
        html="<p>客户<b>王建国</b>的工单已超时。</p>",
    )

    sent = email_channel.send(msg, smtp_settings(mail_server))

    (sender, rcpts, raw) = mail_server.received[0]
    assert (sender, rcpts) == ("notify@jingwei.example", ["zhang.wei@example.com"])
    assert mail_server.logins == [MAIL_USER]
    # The subject travels as RFC 2047 encoded words in UTF-8 and reads back as written.
    raw_subject = raw.split(b"\nSubject: ", 1)[1].split(b"\n", 1)[0]
    assert raw_subject.isascii() and b"=?utf-8?" in raw_subject.lower()
    mail = parse(raw)
    assert mail["Subject"] == "工单 GD-20240501-0007 已超时"
    assert mail["To"].addresses[0].display_name == "张伟"
    assert mail["Auto-Submitted"] == "auto-generated"
    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == msg.text
    assert html.get_content().strip() == msg.html
    assert mail["Message-ID"] == f"<{msg.delivery_uid}@jingwei>" == sent.provider_id


def test_a_resent_delivery_carries_the_same_message_id(mail_server):
    msg = message(address="zhang.wei@example.com")
    email_channel.send(msg, smtp_settings(mail_server))
    email_channel.send(msg, smtp_settings(mail_server))
    ids = {parse(raw)["Message-ID"] for _, _, raw in mail_server.received}
    assert ids == {f"<{msg.delivery_uid}@jingwei>"}


def test_mail_without_html_is_plain_text_only(mail_server):
    email_channel.send(message(address="li.na@example.com"), smtp_settings(mail_server))
    mail = parse(mail_server.received[0][2])
    assert mail.get_content_type() == "text/plain"


def test_a_wrong_smtp_password_is_refused_for_good(mail_server):
    error = refused(
        email_channel.send,
        message(address="zhang.wei@example.com"),
        smtp_settings(mail_server, password="wrong"),
    )
    assert not error.retryable
    assert "用户名或密码" in str(error)
    assert mail_server.received == []


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        ("550 5.1.1 <zhang.wei@example.com>: mailbox unavailable", False),
        ("451 4.3.0 Temporary failure, please try again later", True),
        ("452 4.2.2 Mailbox full", True),
    ],
)
def test_a_refused_recipient_is_retried_only_on_a_4xx(mail_server, reply, retryable):
    mail_server.rcpt_reply = reply
    error = refused(
        email_channel.send, message(address="zhang.wei@example.com"), smtp_settings(mail_server)
    )
    assert error.retryable is retryable
    assert reply.split()[0] in str(error)


def test_a_mail_server_that_is_down_is_tried_again():
    settings = {"host": "127.0.0.1", "port": free_port(), "timeout_seconds": 5}
    error = refused(email_channel.send, message(address="zhang.wei@example.com"), settings)
    assert error.retryable


def test_no_host_means_the_platforms_own_mail_settings():
    # Under test Django's default backend is the in-memory outbox.
    django_mail.outbox.clear()
    email_channel.send(message(address="zhang.wei@example.com", title="第一行\n第二行"), {})
    (sent,) = django_mail.outbox
    mime = parse(sent.message().as_bytes())
    assert mime["To"].addresses[0].display_name == "张伟"
    assert sent.subject == "第一行 第二行"  # a title with a newline still makes a valid header


def test_mail_to_nobody_is_not_retried():
    assert not refused(email_channel.send, message(address=""), {}).retryable


# --- Aliyun SMS -----------------------------------------------------------------------------

# The worked example of Aliyun's SMS "签名机制" page (help.aliyun.com/document_detail/101343 and
# its older copy 56189): testId / testSecret, these parameters, this signature.
ALIYUN_DOC_PARAMS = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
ALIYUN_DOC_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123"
    "%26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF"
    "%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B%25E8%25AF"
    "%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce"
    "%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode"
    "%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D"
    "%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
)


def test_the_sms_signature_matches_aliyuns_published_example():
    assert sms_mod.string_to_sign("GET", ALIYUN_DOC_PARAMS) == ALIYUN_DOC_STRING_TO_SIGN
    assert (
        sms_mod.signature("GET", ALIYUN_DOC_PARAMS, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    )
    # and the simulator's own implementation agrees with the document too
    assert aliyun_rpc_signature("GET", ALIYUN_DOC_PARAMS, "testSecret") == (
        "zJDF+Lrzhj/ThnlvIToysFRq6t4=",
        ALIYUN_DOC_STRING_TO_SIGN,
    )


def test_the_sms_signature_matches_aliyuns_rpc_example():
    # The generic RPC example (DescribeRegions) of Aliyun's "签名机制" for RPC APIs.
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert sms_mod.signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~-_.", "~-_."),
        ("/=&+", "%2F%3D%26%2B"),
        ("经", "%E7%BB%8F"),
    ],
)
def test_sms_percent_encoding_follows_aliyuns_special_cases(text, encoded):
    assert sms_mod.percent_encode(text) == encoded


def test_an_sms_reaches_the_number_with_its_chinese_template_parameters(
    sms_provider: Provider[AliyunSmsSimulator],
):
    msg = message(
        address="138 0013 8000",
        sms_template_code="SMS_1001",
        sms_params={"ticket": "GD-20240501-0007", "customer": "王建国"},
    )

    sent = sms_channel.send(msg, sms_provider.settings)

    (got,) = sms_provider.sim.messages
    assert got.phone_numbers == ("13800138000",)
    assert (got.sign_name, got.template_code) == ("经纬服务", "SMS_1001")
    assert got.template_param == {"ticket": "GD-20240501-0007", "customer": "王建国"}
    assert got.out_id == msg.delivery_uid
    assert sent.provider_id == got.biz_id


def test_an_sms_without_its_own_template_uses_the_channels_default(sms_provider):
    sms_channel.send(
        message(address="13800138000", sms_params={"text": "空调维修已完成"}), sms_provider.settings
    )
    assert sms_provider.sim.messages[0].template_code == "SMS_1002"


def test_an_sms_signed_with_the_wrong_secret_is_refused_for_good(sms_provider):
    settings = {**sms_provider.settings, "access_key_secret": "not-the-secret"}
    error = refused(sms_channel.send, message(address="13800138000"), settings)
    assert not error.retryable
    assert "SignatureDoesNotMatch" in str(error)
    assert sms_provider.sim.messages == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"address": "12345"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"address": "13800138000", "sms_template_code": "SMS_404"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        (
            {
                "address": "13800138000",
                "sms_template_code": "SMS_1001",
                "sms_params": {"ticket": "1"},
            },
            "isv.TEMPLATE_MISSING_PARAMETERS",
        ),
    ],
)
def test_an_sms_aliyun_will_never_take_is_not_retried(sms_provider, overrides, code):
    error = refused(sms_channel.send, message(**overrides), sms_provider.settings)
    assert not error.retryable
    assert code in str(error)


def test_an_unknown_access_key_is_not_retried(sms_provider):
    settings = {**sms_provider.settings, "access_key_id": "LTAI-unknown"}
    error = refused(sms_channel.send, message(address="13800138000"), settings)
    assert not error.retryable and "InvalidAccessKeyId.NotFound" in str(error)


def test_sms_flow_control_is_retried_and_passes_a_minute_later(clock: Clock):
    sim = AliyunSmsSimulator({SMS_KEY_ID: SMS_SECRET}, per_number_per_minute=1, clock=clock)
    with serve(sim) as served:
        settings = {
            "access_key_id": SMS_KEY_ID,
            "access_key_secret": SMS_SECRET,
            "sign_name": "经纬服务",
            "template_code": "SMS_1",
            "endpoint": served.url + "/",
        }
        sms_channel.send(message(address="13800138000"), settings)
        error = refused(sms_channel.send, message(address="13800138000"), settings)
        assert error.retryable and "isv.BUSINESS_LIMIT_CONTROL" in str(error)
        clock.advance(60)
        sms_channel.send(message(address="13800138000"), settings)
    assert len(sim.messages) == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("isp.SYSTEM_ERROR", 200), ("Throttling.User", 400), ("InternalError", 500)],
)
def test_aliyuns_own_failures_are_retried(sms_provider, code, status):
    sms_provider.sim.fail_next(code, status=status)
    error = refused(
        sms_channel.send,
        message(address="13800138000", sms_params={"text": "维修完成"}),
        sms_provider.settings,
    )
    assert error.retryable and code in str(error)
    sms_channel.send(
        message(address="13800138000", sms_params={"text": "维修完成"}), sms_provider.settings
    )
    assert len(sms_provider.sim.messages) == 1


def test_an_sms_endpoint_that_is_down_is_tried_again():
    settings = {
        "access_key_id": "a",
        "access_key_secret": "b",
        "sign_name": "经纬服务",
        "template_code": "SMS_1",
        "endpoint": f"http://127.0.0.1:{free_port()}/",
    }
    assert refused(sms_channel.send, message(address="13800138000"), settings).retryable


# Any text but lone surrogates (not encodable as UTF-8, so not sendable at all).
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def test_any_unicode_in_an_sms_survives_signing_and_verification():
    sim = AliyunSmsSimulator({SMS_KEY_ID: SMS_SECRET})
    with serve(sim) as served:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            sign_name=unicode_text,
            params=st.dictionaries(st.text(min_size=1, max_size=10), unicode_text, max_size=4),
        )
        def check(sign_name: str, params: dict[str, str]) -> None:
            settings_ = {
                "access_key_id": SMS_KEY_ID,
                "access_key_secret": SMS_SECRET,
                "sign_name": sign_name,
                "template_code": "SMS_1",
                "endpoint": served.url + "/",
            }
            msg = message(address="13800138000", sms_params=params)
            sent = sms_channel.send(msg, settings_)
            got = sim.messages[-1]
            assert (got.sign_name, got.template_param, got.biz_id) == (
                sign_name,
                params,
                sent.provider_id,
            )

        check()


# --- WeCom ----------------------------------------------------------------------------------


def test_a_wecom_text_message_reaches_the_user(wecom_provider):
    msg = message(address="ZhangWei")
    sent = wecom_channel.send(msg, wecom_provider.settings)
    (got,) = wecom_provider.sim.messages
    assert (got.touser, got.agentid, got.msgtype) == (("ZhangWei",), 1000005, "text")
    assert got.content == {"content": f"{msg.title}\n{msg.text}"}
    assert sent.provider_id == got.msgid


def test_a_message_with_a_link_is_a_text_card(wecom_provider):
    url = "https://crm.jingwei.example/tickets/GD-20240501-0007"
    wecom_channel.send(message(address="LiNa", payload={"url": url}), wecom_provider.settings)
    (got,) = wecom_provider.sim.messages
    assert got.msgtype == "textcard"
    assert got.content == {
        "title": "工单 GD-20240501-0007 已超时",
        "description": "客户王建国的空调维修工单已超过承诺时限 2 小时，请尽快处理。",
        "url": url,
        "btntxt": "详情",
    }


def test_over_long_wecom_text_is_cut_on_a_character_boundary(wecom_provider):
    wecom_channel.send(message(address="ZhangWei", text="超时" * 2000), wecom_provider.settings)
    content = wecom_provider.sim.messages[0].content["content"]
    assert len(content.encode()) <= 2048 and content.endswith("…")


def test_the_wecom_token_is_fetched_once_and_reused(wecom_provider):
    wecom_channel.send(message(address="ZhangWei"), wecom_provider.settings)
    wecom_channel.send(message(address="LiNa"), wecom_provider.settings)
    assert wecom_provider.sim.gettoken_calls == 1
    assert len(wecom_provider.sim.messages) == 2


def test_an_expired_wecom_token_is_refreshed_and_the_message_sent(wecom_provider, clock: Clock):
    wecom_channel.send(message(address="ZhangWei"), wecom_provider.settings)
    # Two hours later WeCom has expired the token our cache still holds: 42001, then a refresh.
    clock.advance(7201)
    wecom_channel.send(message(address="LiNa", text="第二条"), wecom_provider.settings)
    assert wecom_provider.sim.gettoken_calls == 2
    assert [m.touser for m in wecom_provider.sim.messages] == [("ZhangWei",), ("LiNa",)]


def test_a_revoked_wecom_token_is_refreshed_too(wecom_provider):
    wecom_channel.send(message(address="ZhangWei"), wecom_provider.settings)
    wecom_provider.sim.expire_tokens()
    wecom_channel.send(message(address="WangFang"), wecom_provider.settings)
    assert len(wecom_provider.sim.messages) == 2


def test_wecom_drops_a_resend_of_the_same_message_within_the_interval(wecom_provider, clock: Clock):
    msg = message(address="ZhangWei")
    first = wecom_channel.send(msg, wecom_provider.settings)
    # The worker died before recording the send; the next one sends the same delivery again.
    again = wecom_channel.send(msg, wecom_provider.settings)
    assert len(wecom_provider.sim.messages) == 1
    assert wecom_provider.sim.duplicates == 1
    assert again.provider_id == first.provider_id
    # Different content is a different message
    wecom_channel.send(message(address="ZhangWei", text="另一条"), wecom_provider.settings)
    assert len(wecom_provider.sim.messages) == 2
    # and after the 30 minutes the same content goes out again.
    clock.advance(1801)
    wecom_channel.send(msg, wecom_provider.settings)
    assert len(wecom_provider.sim.messages) == 3


@pytest.mark.parametrize(
    ("change", "errcode"), [({"corp_secret": "wrong"}, "40001"), ({"corp_id": "ww-other"}, "40013")]
)
def test_wrong_wecom_credentials_are_refused_for_good(wecom_provider, change, errcode):
    error = refused(
        wecom_channel.send, message(address="ZhangWei"), {**wecom_provider.settings, **change}
    )
    assert not error.retryable and errcode in str(error)
    assert wecom_provider.sim.messages == []


def test_a_wrong_agent_id_is_not_retried(wecom_provider):
    settings = {**wecom_provider.settings, "agent_id": 1}
    error = refused(wecom_channel.send, message(address="ZhangWei"), settings)
    assert not error.retryable and "40056" in str(error)


def test_an_unknown_wecom_user_is_not_retried(wecom_provider):
    error = refused(wecom_channel.send, message(address="NoSuchUser"), wecom_provider.settings)
    assert not error.retryable and "81013" in str(error)


@pytest.mark.parametrize("errcode", [-1, 45009])
def test_a_busy_or_rate_limited_wecom_is_retried(wecom_provider, errcode):
    wecom_provider.sim.fail_next(errcode)
    error = refused(wecom_channel.send, message(address="ZhangWei"), wecom_provider.settings)
    assert error.retryable and str(errcode) in str(error)
    wecom_channel.send(message(address="ZhangWei"), wecom_provider.settings)
    assert len(wecom_provider.sim.messages) == 1


def test_a_wecom_that_is_down_is_tried_again():
    settings = {
        "corp_id": "a",
        "corp_secret": "b",
        "agent_id": 1,
        "api_base": f"http://127.0.0.1:{free_port()}",
    }
    assert refused(wecom_channel.send, message(address="ZhangWei"), settings).retryable


# --- DingTalk robot -------------------------------------------------------------------------


def test_the_dingtalk_sign_matches_a_hand_computed_value():
    # printf '1577808000001\nSEC0123…' | openssl dgst -sha256 -hmac 'SEC0123…' -binary | base64
    assert (
        dingtalk_mod.sign(1577808000001, ROBOT_SECRET)
        == "oZ7jEQSbEz8wyopkVjMZ94/Ep+JN2gcOa0PfKgeJaMs="
    )
    url = dingtalk_mod.signed_url(
        DingTalkSettings(access_token="tok", secret=ROBOT_SECRET), now_ms=1577808000001
    )
    # "+", "/" and "=" of the Base64 are URL-encoded, as the robot documentation requires.
    assert url == (
        "https://oapi.dingtalk.com/robot/send?access_token=tok&timestamp=1577808000001"
        "&sign=oZ7jEQSbEz8wyopkVjMZ94%2FEp%2BJN2gcOa0PfKgeJaMs%3D"
    )


def test_a_pasted_robot_webhook_address_keeps_only_its_token():
    s = DingTalkSettings(access_token="https://oapi.dingtalk.com/robot/send?access_token=abc123")
    assert s.access_token == "abc123"
    assert "access_token=abc123" in dingtalk_mod.signed_url(s)


def test_the_group_gets_one_markdown_message_mentioning_the_recipients(dingtalk_provider):
    msg = message(mention_mobiles=("13800138000", "13900139000"))
    dingtalk_channel.send(msg, dingtalk_provider.settings)
    (got,) = dingtalk_provider.sim.messages
    assert (got.msgtype, got.title) == ("markdown", "工单 GD-20240501-0007 已超时")
    assert got.text == (
        "#### 工单 GD-20240501-0007 已超时\n\n客户王建国的空调维修工单已超过承诺时限 2 小时，请尽快处理。"
        "\n\n@13800138000 @13900139000"
    )
    assert got.at_mobiles == ("13800138000", "13900139000") and not got.is_at_all


def test_a_wrong_robot_secret_is_refused_for_good(dingtalk_provider):
    settings = {**dingtalk_provider.settings, "secret": "SECnot-the-secret"}
    error = refused(dingtalk_channel.send, message(), settings)
    assert not error.retryable and "310000" in str(error)
    assert dingtalk_provider.sim.messages == []


def test_a_timestamp_more_than_an_hour_off_is_refused(dingtalk_provider, clock: Clock):
    clock.advance(3601)  # DingTalk's clock an hour and a second ahead of ours
    error = refused(dingtalk_channel.send, message(), dingtalk_provider.settings)
    assert not error.retryable and "310000" in str(error)
    clock.advance(-2)
    dingtalk_channel.send(message(), dingtalk_provider.settings)


def test_more_than_twenty_a_minute_is_throttled_and_retried(dingtalk_provider, clock: Clock):
    for n in range(20):
        dingtalk_channel.send(message(title=f"第 {n + 1} 条"), dingtalk_provider.settings)
    error = refused(dingtalk_channel.send, message(title="第 21 条"), dingtalk_provider.settings)
    assert error.retryable and "130101" in str(error)
    clock.advance(60)
    dingtalk_channel.send(message(title="第 21 条"), dingtalk_provider.settings)
    assert len(dingtalk_provider.sim.messages) == 21


def test_an_unknown_robot_is_not_retried(dingtalk_provider):
    settings = {**dingtalk_provider.settings, "access_token": "no-such-robot"}
    assert not refused(dingtalk_channel.send, message(), settings).retryable


def test_a_dingtalk_that_is_down_is_tried_again():
    settings = {
        "access_token": "t",
        "secret": "s",
        "robot_url": f"http://127.0.0.1:{free_port()}/robot/send",
    }
    assert refused(dingtalk_channel.send, message(), settings).retryable


# --- webhook --------------------------------------------------------------------------------


def test_the_webhook_posts_a_signed_json_document(webhook_provider):
    msg = message(
        address="zhang.wei@example.com",
        payload={
            "ticket": "GD-20240501-0007",
            "amount": Decimal("1280.50"),
            "due": date(2024, 5, 1),
        },
    )

    sent = webhook_channel.send(msg, webhook_provider.settings)

    assert webhook_provider.sim.received == 1 and webhook_provider.sim.rejected == 0
    assert webhook_provider.sim.message(msg.delivery_uid) == {
        "delivery": msg.delivery_uid,
        "event": "ticket.overdue",
        "severity": "urgent",
        "title": "工单 GD-20240501-0007 已超时",
        "text": "客户王建国的空调维修工单已超过承诺时限 2 小时，请尽快处理。",
        "recipient": "张伟",
        "address": "zhang.wei@example.com",
        "payload": {"ticket": "GD-20240501-0007", "amount": "1280.50", "due": "2024-05-01"},
    }
    assert sent.provider_id == "wh-1"


def test_the_webhook_signature_matches_a_hand_computed_value():
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'webhook-secret-for-tests-0123'
    assert webhook_mod.signature(WEBHOOK_SECRET, 1700000000, b'{"a":1}') == (
        "sha256=3821f8639fe58deb6749c8cad9c48825ddc7b3f75d8e64a395faea03b40c625b"
    )


def test_a_resent_webhook_delivery_is_recognised_by_the_receiver(webhook_provider):
    msg = message()
    webhook_channel.send(msg, webhook_provider.settings)
    webhook_channel.send(msg, webhook_provider.settings)
    assert (webhook_provider.sim.received, webhook_provider.sim.duplicates) == (1, 1)


def test_a_webhook_signed_with_the_wrong_secret_is_refused_for_good(webhook_provider):
    settings = {**webhook_provider.settings, "secret": "not-the-secret-0123456789"}
    error = refused(webhook_channel.send, message(), settings)
    assert not error.retryable and "401" in str(error)
    assert (webhook_provider.sim.received, webhook_provider.sim.rejected) == (0, 1)


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (404, False)]
)
def test_the_webhook_answer_says_whether_to_try_again(webhook_provider, status, retryable):
    webhook_provider.sim.fail_next(status)
    error = refused(webhook_channel.send, message(), webhook_provider.settings)
    assert error.retryable is retryable and str(status) in str(error)


def test_a_webhook_that_is_down_is_tried_again():
    settings = {"url": f"http://127.0.0.1:{free_port()}/hook", "secret": WEBHOOK_SECRET}
    assert refused(webhook_channel.send, message(), settings).retryable


def test_a_webhook_that_does_not_answer_in_time_is_tried_again():
    release = threading.Event()

    def stalls(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serve(stalls) as served:
        settings = {"url": served.url + "/hook", "secret": WEBHOOK_SECRET, "timeout_seconds": 0.2}
        try:
            error = refused(webhook_channel.send, message(), settings)
        finally:
            release.set()
    assert error.retryable


def test_a_redirecting_webhook_is_not_followed(webhook_provider):
    def redirects(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("307 Temporary Redirect", [("Location", webhook_provider.settings["url"])])
        return [b""]

    with serve(redirects) as served:
        settings = {**webhook_provider.settings, "url": served.url + "/hook"}
        error = refused(webhook_channel.send, message(), settings)
    assert not error.retryable and "307" in str(error)
    assert webhook_provider.sim.received == 0


def test_the_webhook_receiver_counts_right_under_concurrent_senders(webhook_provider):
    msgs = [message() for _ in range(20)]
    failures: list[BaseException] = []

    def send_all() -> None:
        try:
            for m in msgs:
                webhook_channel.send(m, webhook_provider.settings)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=send_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert (webhook_provider.sim.received, webhook_provider.sim.duplicates) == (20, 60)
    assert {m["delivery"] for m in webhook_provider.sim.messages} == {m.delivery_uid for m in msgs}


def test_any_unicode_in_a_webhook_arrives_as_sent():
    receiver = WebhookReceiver(WEBHOOK_SECRET)
    with serve(receiver) as served:

        @settings(max_examples=40, deadline=None)
        @given(
            title=unicode_text,
            text=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
        )
        def check(title: str, text: str) -> None:
            msg = message(title=title, text=text)
            webhook_channel.send(msg, {"url": served.url + "/", "secret": WEBHOOK_SECRET})
            got = receiver.message(msg.delivery_uid)
            assert (got["title"], got["text"]) == (title, text)

        check()


# --- the demo: all four on one port ---------------------------------------------------------


@pytest.fixture
def simulators_command() -> Iterator[tuple[Any, io.StringIO]]:
    command = load_command_class("jingwei.notify", "simulators")
    out = io.StringIO()
    command.stdout = OutputWrapper(out)
    thread = threading.Thread(
        target=command.handle, kwargs={"host": "127.0.0.1", "port": 0, "quiet": False}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not command.base_url and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield command, out
    finally:
        command.stopping.set()
        thread.join(timeout=30)


def test_jingwei_simulators_serves_all_four_for_a_demo(simulators_command):
    command, out = simulators_command
    base = command.base_url
    printed = out.getvalue()
    for path in ("/sms/", "/wecom", "/dingtalk/robot/send", "/webhook/"):
        assert base + path in printed
    settings = Simulators.channel_settings(base)
    # The settings printed for the demo are valid channel settings
    for name, values in settings.items():
        CHANNELS[name].settings_model.model_validate(values)

    sms_channel.send(message(address="13800138000", sms_params={"text": "演示"}), settings["sms"])
    wecom_channel.send(message(address="ZhangWei"), settings["wecom"])
    dingtalk_channel.send(message(), settings["dingtalk"])
    webhook_channel.send(message(), settings["webhook"])

    shown = out.getvalue()
    for kind in ("[sms]", "[wecom]", "[dingtalk]", "[webhook]"):
        assert kind in shown


def test_the_demo_server_answers_404_outside_its_mounts(simulators_command):
    command, _ = simulators_command
    settings = {"url": command.base_url + "/nowhere", "secret": WEBHOOK_SECRET}
    error = refused(webhook_channel.send, message(), settings)
    assert not error.retryable and "404" in str(error)
