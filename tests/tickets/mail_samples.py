"""Raw mail as Chinese clients send it, built byte by byte so each encoding is exactly the one named."""

from __future__ import annotations

import base64

WANG = "王建国"
WANG_ADDRESS = "wang.jianguo@example.com"
SUBJECT = "空调不制冷了"
MAILBOX = "service@tickets.jingwei.example"


def encoded_word(text: str, charset: str, encoding: str = "B") -> str:
    data = text.encode(charset)
    if encoding == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="
    q = "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else "_" if b == 0x20 else f"={b:02X}"
        for b in data
    )
    return f"=?{charset}?Q?{q}?="


def raw_mail(
    *,
    subject: bytes | str = encoded_word(SUBJECT, "gb2312"),
    sender: bytes | str = f"{encoded_word(WANG, 'gb2312')} <{WANG_ADDRESS}>",
    to: str = MAILBOX,
    extra_headers: str = "",
    content_type: str = "text/plain; charset=gbk",
    transfer_encoding: str = "8bit",
    body: bytes = "客厅的空调开机半小时还是吹热风，型号 KFR-35GW。\r\n".encode("gbk"),
    message_id: str | None = "<20261124100000.4711@mail.example.com>",
) -> bytes:
    def header(name: str, value: bytes | str) -> bytes:
        return (
            name.encode("ascii")
            + b": "
            + (value if isinstance(value, bytes) else value.encode("ascii"))
            + b"\r\n"
        )

    head = (
        header("From", sender)
        + header("To", to)
        + header("Subject", subject)
        + header("Date", "Tue, 24 Nov 2026 10:00:00 +0800")
        + (header("Message-ID", message_id) if message_id else b"")
        + extra_headers.encode("ascii")
        + header("MIME-Version", "1.0")
        + header("Content-Type", content_type)
        + header("Content-Transfer-Encoding", transfer_encoding)
    )
    return head + b"\r\n" + body


def journey_mail() -> bytes:
    """王建国 writes "空调不制冷了" from a client that encodes in GB2312."""
    return raw_mail()


def multipart_mail(parts: list[bytes], *, subtype: str = "mixed", boundary: str = "=_b1") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return raw_mail(
        content_type=f'multipart/{subtype}; boundary="{boundary}"',
        transfer_encoding="7bit",
        body=b"This is a multi-part message in MIME format.\r\n" + body,
    )


def part(headers: str | bytes, payload: bytes) -> bytes:
    head = headers if isinstance(headers, bytes) else headers.encode("ascii")
    return head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + payload


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")
