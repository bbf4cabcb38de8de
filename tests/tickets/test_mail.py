"""Reading customer mail and writing replies (jingwei.tickets.mail): no database, no network."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from django.core import mail as django_mail
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from jingwei.tickets.mail import (
    MAX_ATTACHMENTS,
    MAX_MESSAGE_BYTES,
    MailRejected,
    compose_reply,
    parse_message,
    send_reply,
    ticket_number_in,
)

from .mail_samples import (
    MAILBOX,
    SUBJECT,
    WANG,
    WANG_ADDRESS,
    b64,
    encoded_word,
    journey_mail,
    multipart_mail,
    part,
    raw_mail,
)

# --- the journey ----------------------------------------------------------------------------


def test_wang_jianguos_gb2312_mail_reads_as_he_wrote_it():
    # Given 王建国's mail, subject and name encoded in GB2312, body in GBK
    mail = parse_message(journey_mail())

    assert mail.subject == "空调不制冷了"
    assert mail.from_name == "王建国"
    assert mail.from_address == "wang.jianguo@example.com"
    assert mail.to == (MAILBOX,)
    assert mail.text == "客厅的空调开机半小时还是吹热风，型号 KFR-35GW。"
    assert mail.message_id == "20261124100000.4711@mail.example.com"
    assert mail.date == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert mail.date.utcoffset() == timedelta(hours=8)
    assert mail.auto_submitted is False
    assert mail.attachments == ()


# --- subjects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "charset", "encoding"),
    [
        (SUBJECT, "gb2312", "B"),
        (SUBJECT, "GB2312", "Q"),
        ("空调不制冷了，朱镕基路门店", "gbk", "B"),  # 镕 is GBK, not GB2312
        ("空调不制冷了，朱镕基路门店", "GBK", "Q"),
        ("空调不制冷了 䶮", "gb18030", "B"),  # 䶮 needs GB18030's four-byte form
        ("空调不制冷了 🙁", "utf-8", "B"),
        ("空调不制冷了", "UTF-8", "Q"),
        ("冷氣不冷了", "big5", "B"),
    ],
)
def test_encoded_subjects_decode_in_every_chinese_charset(subject, charset, encoding):
    mail = parse_message(raw_mail(subject=encoded_word(subject, charset, encoding)))
    assert mail.subject == subject


def test_gbk_text_labelled_gb2312_still_decodes():
    # Clients label GBK text "gb2312"; 镕 and 堃 are outside GB2312
    subject = "朱镕基路店，联系人王堃"
    mislabelled = f"=?gb2312?B?{base64.b64encode(subject.encode('gbk')).decode()}?="
    assert parse_message(raw_mail(subject=mislabelled)).subject == subject


def test_a_character_split_across_two_encoded_words_is_joined():
    data = SUBJECT.encode("utf-8")
    first, second = data[:4], data[4:]  # cuts the second character in half
    words = " ".join(f"=?utf-8?B?{base64.b64encode(p).decode()}?=" for p in (first, second))
    assert parse_message(raw_mail(subject=f"回复: {words}".encode())).subject == f"回复: {SUBJECT}"


def test_a_folded_subject_with_encoded_words_and_plain_text():
    subject = f"Re: [GD20261124-0001]\r\n {encoded_word('空调', 'gb2312')}\r\n\t{encoded_word('不制冷了', 'gb2312')}"
    assert parse_message(raw_mail(subject=subject)).subject == "Re: [GD20261124-0001] 空调不制冷了"


@pytest.mark.parametrize("charset", ["gbk", "utf-8"])
def test_undeclared_8bit_subject_and_name_are_read(charset):
    # Some Chinese clients put raw GBK bytes in headers without any encoded-word
    mail = parse_message(
        raw_mail(
            subject=f"回复：{SUBJECT}".encode(charset),
            sender=f"{WANG} <{WANG_ADDRESS}>".encode(charset),
        )
    )
    assert mail.subject == f"回复：{SUBJECT}"
    assert mail.from_name == WANG
    assert mail.from_address == WANG_ADDRESS


_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
_TEXT = st.text(
    st.one_of(_CJK, st.sampled_from("abcXYZ 0123，。：！?-_=")), min_size=1, max_size=40
)


@given(
    text=_TEXT.filter(lambda t: _encodable(t, "gbk")),
    charset=st.sampled_from(["gb2312", "gbk", "gb18030", "utf-8"]),
    cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=4),
)
def test_any_subject_split_into_encoded_words_anywhere_decodes_back(text, charset, cuts):
    # Given a subject encoded in the charset its client uses (GBK text when it says gb2312),
    # cut into encoded-words at arbitrary byte offsets, even inside a character
    data = text.encode("gbk" if charset == "gb2312" else charset)
    offsets = sorted({c for c in cuts if c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *offsets], [*offsets, len(data)], strict=True)]
    words = "\r\n ".join(f"=?{charset}?B?{base64.b64encode(p).decode()}?=" for p in pieces)
    # Then it reads back exactly
    assert parse_message(raw_mail(subject=words)).subject == text.strip()


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60))
def test_any_subject_the_stdlib_writes_reads_back(subject):
    # Given any subject as Python's own mail package encodes it (encoded-words, folding)
    msg = EmailMessage()
    msg["From"] = f"{WANG} <{WANG_ADDRESS}>"
    msg["Subject"] = subject
    msg.set_content("x")
    # Then parse_message reads the same words back
    assert parse_message(msg.as_bytes()).subject.split() == subject.split()


# --- bodies ---------------------------------------------------------------------------------


def test_gbk_body_quoted_printable():
    body = "故障现象：开机后不制冷。\r\n地址：上海市浦东新区\r\n".encode("gbk")
    import quopri

    mail = parse_message(
        raw_mail(
            content_type='text/plain; charset="GB2312"',
            transfer_encoding="quoted-printable",
            body=quopri.encodestring(body),
        )
    )
    assert mail.text == "故障现象：开机后不制冷。\n地址：上海市浦东新区"


def test_undeclared_charset_body_falls_back_to_gbk():
    mail = parse_message(raw_mail(content_type="text/plain", body="空调不制冷了".encode("gbk")))
    assert mail.text == "空调不制冷了"


def test_html_only_body_becomes_plain_text():
    html = (
        "<html><head><title>标题</title><style>p {color: red}</style></head><body>"
        "<div>您好：</div><p>空调&nbsp;不制冷了，<b>很急</b>。<br>电话 138-0000-0000</p>"
        "<ul><li>型号 KFR-35GW</li><li>购买于 2025 年</li></ul>"
        "<script>alert('x')</script></body></html>"
    )
    mail = parse_message(
        raw_mail(
            content_type='text/html; charset="gb2312"',
            transfer_encoding="base64",
            body=b64(html.encode("gbk")),
        )
    )
    assert mail.text == (
        "您好：\n\n空调 不制冷了，很急。\n电话 138-0000-0000\n\n- 型号 KFR-35GW\n- 购买于 2025 年"
    )


def test_html_charset_from_meta_when_the_header_has_none():
    html = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312"></head><body>空调不制冷了</body></html>'
    mail = parse_message(raw_mail(content_type="text/html", body=html.encode("gbk")))
    assert mail.text == "空调不制冷了"


def test_plain_part_is_preferred_over_html():
    alternative = multipart_mail(
        [
            part("Content-Type: text/plain; charset=utf-8", "纯文本版".encode()),
            part("Content-Type: text/html; charset=utf-8", "<p>网页版</p>".encode()),
        ],
        subtype="alternative",
    )
    mail = parse_message(alternative)
    assert mail.text == "纯文本版"
    assert mail.attachments == ()


def test_html_reply_drops_the_blockquoted_history():
    html = (
        "<div>已经按说明重启，还是不行。</div>"
        '<div class="gmail_quote"><div>在 2026年11月24日 10:00，客服 &lt;service@x.com&gt; 写道：</div>'
        "<blockquote><p>请先断电重启空调。</p></blockquote></div>"
    )
    mail = parse_message(raw_mail(content_type="text/html; charset=utf-8", body=html.encode()))
    assert mail.text == "已经按说明重启，还是不行。"
    assert "> 请先断电重启空调。" in mail.full_text


def test_outlook_html_reply_reads_without_word_markup_or_history():
    html = (
        "<html><body><div class=WordSection1><p class=MsoNormal>已经重启过了，还是不行。<o:p></o:p></p>"
        "<p class=MsoListParagraph><![if !supportLists]>1.<![endif]>外机不转</p>"
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt"><p class=MsoNormal>'
        "<b>发件人:</b> 经纬客服 &lt;service@x.com&gt;<br><b>发送时间:</b> 2026年11月24日 10:00<br>"
        "<b>主题:</b> Re: [GD20261124-0001] 空调不制冷了</p></div><p>请先断电重启。</p></div></body></html>"
    )
    mail = parse_message(
        raw_mail(content_type="text/html; charset=gb2312", body=html.encode("gbk"))
    )
    assert mail.text == "已经重启过了，还是不行。\n\n1.外机不转"


def test_format_flowed_lines_are_joined():
    body = b"This line is long and was  \r\nwrapped by the client.\r\n"
    mail = parse_message(
        raw_mail(content_type="text/plain; charset=utf-8; format=flowed", body=body)
    )
    assert mail.text == "This line is long and was  wrapped by the client."


_NEW = "还是不制冷，请尽快上门。"


@pytest.mark.parametrize(
    "history",
    [
        "------------------ 原始邮件 ------------------\n发件人: 客服\n> 请先重启",
        "-----原始邮件-----\n发件人: service@x.com\n发送时间: 2026年11月24日 10:00",
        "-----邮件原件-----\n发件人: 客服",
        "-----Original Message-----\nFrom: service@x.com",
        "在 2026年11月24日 10:00，客服 <service@x.com> 写道：\n> 请先重启",
        "客服 <service@x.com> 于2026年11月24日周二 10:00写道：\n> 请先重启",
        "On Tue, Nov 24, 2026 at 10:00 AM 客服 <service@x.com> wrote:\n> Please restart it.",
        "On Tue, Nov 24, 2026 at 10:00 AM Jingwei Service <\nservice@x.com> wrote:\n> Please restart it.",
        "________________________________\nFrom: Jingwei Service <service@x.com>\nSent: Tuesday",
        "发件人: 经纬客服 <service@x.com>\n发送时间: 2026年11月24日 10:00\n收件人: 王建国",
        "> 请先断电重启\n> 经纬客服",
    ],
)
def test_quoted_reply_history_is_stripped(history):
    body = f"{_NEW}\n\n{history}\n".replace("\n", "\r\n").encode("gbk")
    mail = parse_message(raw_mail(body=body))
    assert mail.text == _NEW
    assert mail.full_text.startswith(_NEW) and len(mail.full_text) > len(_NEW)


def test_quote_lines_between_new_text_are_dropped_but_the_answers_kept():
    body = "> 型号是什么？\r\nKFR-35GW\r\n> 哪天买的？\r\n2025年5月\r\n".encode("gbk")
    assert parse_message(raw_mail(body=body)).text == "KFR-35GW\n2025年5月"


# --- attachments ----------------------------------------------------------------------------

_PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01"


def _attachment_mail() -> bytes:
    gbk_name = "故障照片（外机）.jpg".encode("gbk")
    pct = "".join(f"%{b:02X}" for b in gbk_name)
    return multipart_mail(
        [
            part(
                "Content-Type: text/plain; charset=gbk\nContent-Transfer-Encoding: 8bit",
                "见附件".encode("gbk"),
            ),
            part(  # RFC 2231, UTF-8
                "Content-Type: image/jpeg\nContent-Transfer-Encoding: base64\n"
                f"Content-Disposition: attachment; filename*=UTF-8''{quote('故障照片.jpg')}",
                b64(_PHOTO),
            ),
            part(  # RFC 2231 with continuations, GBK
                "Content-Type: image/jpeg\nContent-Transfer-Encoding: base64\n"
                f"Content-Disposition: attachment;\n filename*0*=gbk''{pct[:30]};\n filename*1*={pct[30:]}",
                b64(_PHOTO),
            ),
            part(  # RFC 2047 in quotes, as Outlook and Foxmail write it
                'Content-Type: application/pdf;\n name="'
                + encoded_word("购买发票.pdf", "gbk")
                + '"\n'
                'Content-Transfer-Encoding: base64\nContent-Disposition: attachment;\n filename="'
                + encoded_word("购买发票.pdf", "gbk")
                + '"',
                b64(b"%PDF-1.4"),
            ),
            part(  # raw 8-bit GBK filename
                b'Content-Type: text/plain; charset=gbk\nContent-Disposition: attachment; filename="'
                + "保修卡.txt".encode("gbk")
                + b'"',
                "保修期两年".encode("gbk"),
            ),
            part(  # a signature logo shown inline
                "Content-Type: image/png\nContent-Transfer-Encoding: base64\n"
                "Content-ID: <logo@client>\nContent-Disposition: inline",
                b64(b"\x89PNG"),
            ),
        ]
    )


def test_attachments_keep_their_chinese_names_and_bytes():
    mail = parse_message(_attachment_mail())

    assert mail.text == "见附件"
    assert [(a.filename, a.content_type, a.inline) for a in mail.attachments] == [
        ("故障照片.jpg", "image/jpeg", False),
        ("故障照片（外机）.jpg", "image/jpeg", False),
        ("购买发票.pdf", "application/pdf", False),
        ("保修卡.txt", "text/plain", False),
        ("attachment-5.png", "image/png", True),
    ]
    assert mail.attachments[0].content == _PHOTO
    assert mail.attachments[1].content == _PHOTO
    assert mail.attachments[3].content == "保修期两年".encode("gbk")
    assert mail.attachments[4].content_id == "logo@client"


def test_a_path_in_an_attachment_name_is_dropped():
    mail = parse_message(
        multipart_mail(
            [
                part("Content-Type: text/plain", b"x"),
                part(
                    'Content-Type: text/plain\nContent-Disposition: attachment; filename="..\\..\\boot.ini"',
                    b"x",
                ),
            ]
        )
    )
    assert mail.attachments[0].filename == "boot.ini"


def test_a_forwarded_message_is_an_attachment_not_the_body():
    inner = raw_mail(subject=encoded_word("旧邮件", "gbk"), body="旧内容".encode("gbk"))
    mail = parse_message(
        multipart_mail(
            [
                part("Content-Type: text/plain; charset=utf-8", "转发给你们".encode()),
                part("Content-Type: message/rfc822", inner),
            ]
        )
    )
    assert mail.text == "转发给你们"
    (forwarded,) = mail.attachments
    assert forwarded.filename == "attachment-1.eml"
    assert parse_message(forwarded.content).subject == "旧邮件"


def test_too_many_attachments_are_refused():
    parts = [part("Content-Type: text/plain", b"x")] + [
        part(
            f'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="{i}.bin"',
            b"x",
        )
        for i in range(MAX_ATTACHMENTS + 1)
    ]
    with pytest.raises(MailRejected, match="attachments"):
        parse_message(multipart_mail(parts))
    parse_message(multipart_mail(parts[:-1]))  # exactly the limit is fine


def test_a_message_over_the_size_limit_is_refused():
    with pytest.raises(MailRejected, match="larger than 25 MiB"):
        parse_message(raw_mail(body=b"x" * (MAX_MESSAGE_BYTES + 1)))


# --- ids, threading, dates, automatic mail --------------------------------------------------


def test_reply_headers_give_the_thread():
    mail = parse_message(
        raw_mail(
            message_id="<r2@example.com>",
            extra_headers=(
                "In-Reply-To: <ack-1@tickets.jingwei.example>\r\n"
                "References: <first@example.com>\r\n <ack-1@tickets.jingwei.example>\r\n"
            ),
        )
    )
    assert mail.message_id == "r2@example.com"
    assert mail.in_reply_to == ("ack-1@tickets.jingwei.example",)
    assert mail.references == ("first@example.com", "ack-1@tickets.jingwei.example")
    assert mail.thread_ids == ("ack-1@tickets.jingwei.example", "first@example.com")


def test_without_message_id_the_id_is_stable_across_redelivery():
    raw = raw_mail(message_id=None)
    relayed = b"Received: from mx2.example.com by mx.jingwei.example; Tue, 24 Nov 2026\r\n" + raw
    first = parse_message(raw).message_id
    assert first.startswith("sha256-")
    assert parse_message(raw).message_id == first
    assert parse_message(relayed).message_id == first
    assert parse_message(raw_mail(message_id=None, body=b"other")).message_id != first


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Tue, 24 Nov 2026 10:00:00 +0800",
            datetime(2026, 11, 24, 10, tzinfo=timezone(timedelta(hours=8))),
        ),
        ("Tue, 24 Nov 2026 02:00:00 -0000", datetime(2026, 11, 24, 2, tzinfo=UTC)),
        ("2026年11月24日", None),
    ],
)
def test_dates_are_aware_or_none(header, expected):
    raw = raw_mail().replace(b"Tue, 24 Nov 2026 10:00:00 +0800", header.encode("utf-8"))
    assert parse_message(raw).date == expected


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Precedence: bulk",
        "X-Autoreply: yes",
        "Return-Path: <>",
    ],
)
def test_automatic_mail_is_flagged(header):
    assert parse_message(raw_mail(extra_headers=header + "\r\n")).auto_submitted is True


def test_bounces_from_the_mailer_daemon_are_flagged():
    assert parse_message(raw_mail(sender="MAILER-DAEMON@mx.example.com")).auto_submitted is True


def test_reply_to_is_given_when_it_differs():
    mail = parse_message(raw_mail(extra_headers="Reply-To: Wang Home <wang.home@example.com>\r\n"))
    assert mail.reply_to == "wang.home@example.com"


# --- ticket numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("Re: [GD20261124-0001] 空调不制冷了", "GD20261124-0001"),
        ("回复：[GD20261124-0001] 空调不制冷了", "GD20261124-0001"),
        ("回复：回复：【GD20261124-0001】空调不制冷了", "GD20261124-0001"),
        ("答复: 工单GD20261124-0001进度", "GD20261124-0001"),
        ("RE: ＧＤ２０２６１１２４－００１２", "GD20261124-0012"),  # typed with a full-width IME
        ("re: [gd20261124-0001]", "GD20261124-0001"),
        ("WXGD20261124-123456 已处理", "WXGD20261124-123456"),
        ("序列号 SN20250101-7777 的空调，见 [GD20261124-0003]", "GD20261124-0003"),
        ("空调不制冷了", None),
        ("GD2026112-0001", None),  # seven digits
        ("GD20261124-001", None),  # three digits
        ("ABCDE20261124-0001", None),  # five letters
        ("订单 20261124-0001", None),
    ],
)
def test_ticket_number_in_subjects(subject, number):
    assert ticket_number_in(subject) == number


_NUMBERS = st.from_regex(r"\A[A-Z]{2,4}[0-9]{8}-[0-9]{4,8}\Z")


def _nfkc_tail(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text)


@given(
    number=_NUMBERS,
    before=st.text(max_size=30).filter(lambda t: not re.search(r"[A-Za-z0-9]\Z", _nfkc_tail(t))),
    after=st.text(max_size=30).filter(lambda t: not re.match(r"[0-9]", _nfkc_tail(t))),
)
def test_a_number_anywhere_in_any_text_is_found(number, before, after):
    # Given arbitrary text around a ticket number (that does not glue letters or digits onto it)
    subject = before + number + after
    # Then the number is found
    assert ticket_number_in(subject) == number


# --- replies --------------------------------------------------------------------------------

_QR = b"\x89PNG\r\n\x1a\n fake qr"
_URL = "https://jingwei.example/p/Xy7kQ2"


def _reply(**overrides):
    fields = dict(
        from_address=f"经纬客服 <{MAILBOX}>",
        to_address=f"{WANG} <{WANG_ADDRESS}>",
        subject=f"Re: [GD20261124-0001] {SUBJECT}",
        body_text="王建国您好：\n\n我们已收到您的来信，工单号 GD20261124-0001。",
        in_reply_to="<20261124100000.4711@mail.example.com>",
        references=["first@example.com"],
        qr_png=_QR,
        progress_url=_URL,
    )
    fields.update(overrides)
    return compose_reply(**fields)


def test_a_reply_threads_under_the_customers_mail_and_reads_back():
    message = _reply()
    mail = parse_message(message.as_bytes())

    assert mail.subject == "Re: [GD20261124-0001] 空调不制冷了"
    assert ticket_number_in(mail.subject) == "GD20261124-0001"
    assert (mail.from_name, mail.from_address) == ("经纬客服", MAILBOX)
    assert mail.to == (WANG_ADDRESS,)
    assert mail.in_reply_to == ("20261124100000.4711@mail.example.com",)
    assert mail.references == ("first@example.com", "20261124100000.4711@mail.example.com")
    assert mail.message_id.endswith("@tickets.jingwei.example")
    assert (
        mail.text
        == f"王建国您好：\n\n我们已收到您的来信，工单号 GD20261124-0001。\n\n查看处理进度：{_URL}"
    )
    assert mail.date is not None and mail.date.tzinfo is not None


def test_the_html_part_shows_the_link_and_embeds_the_qr_code():
    message = email.message_from_bytes(_reply().as_bytes(), policy=email.policy.default)
    html_part = message.get_body(preferencelist=("html",))
    html = html_part.get_content()
    (image,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    cid = image["Content-ID"].strip("<>")

    assert f'href="{_URL}"' in html
    assert f'src="cid:{cid}"' in html
    assert image.get_content() == _QR
    assert image.get_content_disposition() == "inline"
    assert message.get_content_type() == "multipart/alternative"


def test_without_qr_code_no_image_is_attached():
    message = _reply(qr_png=None, progress_url=None)
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert "查看处理进度" not in parse_message(message.as_bytes()).text


def test_body_text_is_escaped_in_html():
    message = _reply(body_text="<script>alert(1)</script> & 您好")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; 您好" in html


def test_an_automatic_reply_says_so():
    assert _reply(auto_submitted=True)["Auto-Submitted"] == "auto-replied"
    assert parse_message(_reply(auto_submitted=True).as_bytes()).auto_submitted is True
    assert parse_message(_reply().as_bytes()).auto_submitted is False


def test_a_subject_with_a_line_break_cannot_inject_headers():
    message = _reply(subject="Re: 空调\r\nBcc: everyone@example.com")
    assert message["Bcc"] is None
    assert parse_message(message.as_bytes()).subject == "Re: 空调 Bcc: everyone@example.com"


def test_the_reply_is_7bit_safe_on_the_wire():
    assert max(_reply().as_bytes()) < 128


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_send_reply_goes_through_djangos_mail_connection():
    django_mail.outbox = []
    message = _reply()

    assert send_reply(message) == 1

    (sent,) = django_mail.outbox
    assert sent.subject == "Re: [GD20261124-0001] 空调不制冷了"
    assert sent.to == [WANG_ADDRESS]
    assert sent.from_email == MAILBOX
    assert "工单号 GD20261124-0001" in sent.body
    assert parse_message(sent.message().as_bytes()).message_id == str(message["Message-ID"]).strip(
        "<>"
    )
