"""Email to ticket, the mail layer: read an inbound message, find a ticket number, write a reply.

Pure functions, no database. `parse_message` is forgiving about what Chinese mail clients send
(GB2312 labels on GBK text, undeclared 8-bit headers, encoded-words split inside a character) and
strict about size. `compose_reply` builds a threaded UTF-8 reply; `send_reply` hands it to Django's
configured mail connection (EMAIL_BACKEND / EMAIL_HOST ...).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import hashlib
import html
import mimetypes
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail import get_connection

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
"""Largest raw message accepted (the SMTP server refuses bigger ones before reading them)."""
MAX_ATTACHMENTS = 20
_MAX_MIME_DEPTH = 12
_MAX_ID_LENGTH = 250

# Headers a relay adds on the way; left out of the fallback id so a redelivery hashes the same.
_TRACE_HEADERS = frozenset(
    {b"received", b"return-path", b"delivered-to", b"x-original-to", b"x-received"}
)


class MailRejected(Exception):
    """The message will never be accepted as it is (the SMTP server answers 550 with `reason`).

    `reason` is a short English sentence: it travels back to the sender in an SMTP reply, which
    must stay ASCII for servers without SMTPUTF8."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    inline: bool  # shown inside the body (a signature logo, a pasted screenshot)
    content_id: str | None  # without <>


@dataclass(frozen=True)
class InboundMail:
    message_id: str  # without <>; a sha256-based id when the message has none
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]  # oldest first, as written
    subject: str
    from_address: str  # lower-cased; "" when the message names no sender at all
    from_name: str
    reply_to: str | None  # where a reply should go when it is not from_address
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None  # aware
    text: str  # the new text: quoted reply history removed (may be "" for a bare quote)
    full_text: str  # the whole body as text
    attachments: tuple[Attachment, ...]
    auto_submitted: bool  # an auto-reply, bounce or bulk mail: never answer it automatically

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Ids of earlier messages in the thread, most recent first (In-Reply-To, then References
        newest to oldest), without duplicates: look a ticket up by these in this order."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


# --- charsets -------------------------------------------------------------------------------

_NO_CHARSET = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "8bit", "binary"})


def _codec(charset: str | None) -> str | None:
    """Python codec for a declared charset. GB2312 and GBK labels are read as GB18030 (a superset:
    clients label GBK text "gb2312" all the time), Big5 as Big5-HKSCS for the same reason."""
    name = (charset or "").strip().strip("\"'").lower()
    if name in _NO_CHARSET:
        return None
    try:
        found = codecs.lookup(name).name
    except LookupError:
        return None
    if found in {"gb2312", "gbk", "gb18030"}:
        return "gb18030"
    if found == "big5":
        return "big5hkscs"
    return found


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text of `data` in its declared charset; when that is missing, unknown or wrong, UTF-8, and
    failing that GB18030 (which reads any byte string, replacing what it cannot)."""
    codec = _codec(charset)
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):  # LookupError: a non-text codec such as base64
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _recover_8bit(value: str) -> str:
    """The parser keeps undeclared 8-bit header bytes as surrogate escapes; read them as text."""
    if not _has_surrogates(value):
        return value
    return decode_bytes(value.encode("utf-8", errors="surrogateescape"), None)


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _encoded_word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        if encoding in "bB":
            return base64.b64decode(text + "=" * (-len(text) % 4))
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def decode_header_text(value: str) -> str:
    """Decode RFC 2047 encoded-words (and undeclared 8-bit bytes) in a header value.

    Adjacent encoded-words in the same charset are joined as bytes before decoding: some clients
    split a multibyte character across two words. Whitespace between encoded-words is dropped, as
    RFC 2047 says."""
    text = _recover_8bit(_FOLD.sub("", value))
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    after_word = False
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending:
            out.append(decode_bytes(bytes(pending), pending_charset))
            pending.clear()
        pending_charset = None

    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if gap and not (after_word and gap.isspace()):
            flush()
            out.append(gap)
        charset = match[1].split("*", 1)[0].lower()  # RFC 2231 adds "*language"
        data = _encoded_word_bytes(match[2], match[3])
        if data is None:
            flush()
            out.append(match[0])
            after_word = False
        else:
            if pending and charset != pending_charset:
                flush()
            pending.extend(data)
            pending_charset = charset
            after_word = True
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


# --- headers --------------------------------------------------------------------------------


def _raw_headers(msg: Message, name: str) -> list[str]:
    return [value for key, value in msg.raw_items() if key.lower() == name]


def _raw_header(msg: Message, name: str) -> str | None:
    values = _raw_headers(msg, name)
    return values[0] if values else None


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    # Split addresses before decoding names: a decoded name may contain commas or angle brackets.
    values = [_recover_8bit(_FOLD.sub("", v)) for v in _raw_headers(msg, name)]
    found = []
    for display, address in getaddresses(values):
        address = address.strip().lower()
        if "@" in address:
            found.append((decode_header_text(display).strip(), address))
    return found


def _normalise_id(mid: str) -> str:
    if len(mid) > _MAX_ID_LENGTH:  # keep ids storable; hashing keeps threading intact
        return f"sha256-{hashlib.sha256(mid.encode('utf-8', 'surrogateescape')).hexdigest()}@long.invalid"
    return mid


_ANGLED_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")


def _ids(value: str | None) -> list[str]:
    if not value:
        return []
    text = _recover_8bit(_FOLD.sub("", value)).strip()
    ids = _ANGLED_ID.findall(text)
    if not ids and text and not any(ch.isspace() for ch in text) and "@" in text:
        ids = [text]  # some clients forget the brackets
    seen: dict[str, None] = {}
    for mid in ids:
        seen.setdefault(_normalise_id(mid), None)
    return list(seen)


def fallback_message_id(raw: bytes) -> str:
    """Stable id for a message without Message-ID: a hash of its bytes without trace headers, so
    the same message delivered again (via another relay, with a new Received line) hashes the same."""
    head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in _TRACE_HEADERS
        if not skipping:
            kept.append(line)
    digest = hashlib.sha256(b"\n".join(kept) + sep + body).hexdigest()
    return f"sha256-{digest}@jingwei.invalid"


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_recover_8bit(_FOLD.sub("", value)).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": the zone is unknown; UTC is the RFC 5322 reading
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})


def _is_automatic(msg: Message, from_address: str) -> bool:
    auto = (_raw_header(msg, "auto-submitted") or "").strip().lower()
    precedence = (_raw_header(msg, "precedence") or "").strip().lower()
    return_path = _raw_header(msg, "return-path")
    return (
        (auto != "" and not auto.startswith("no"))
        or precedence in _AUTO_PRECEDENCE
        or _raw_header(msg, "x-autoreply") is not None
        or _raw_header(msg, "x-autorespond") is not None
        or msg.get_content_type() == "multipart/report"
        or from_address.split("@", 1)[0] in _DAEMONS
        or (return_path is not None and return_path.strip() == "<>")
    )


# --- parameters, filenames ----------------------------------------------------------------


def _param(part: Message, param: str, header: str) -> str | None:
    """A header parameter decoded: RFC 2231 (`filename*=gbk''%B9%CA...`, with continuations),
    RFC 2047 inside quotes (`name="=?GBK?B?...?="`, what Outlook and Foxmail send) or raw 8-bit."""
    raw = _raw_header(part, header)
    if raw is None:
        return None
    probe = Message()
    probe[header] = _recover_8bit(_FOLD.sub("", raw))
    value = probe.get_param(param, header=header)
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _language, text = value
        try:
            return decode_bytes(text.encode("latin-1"), charset or None)
        except UnicodeEncodeError:
            return text
    return decode_header_text(value)


_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")


def _safe_filename(name: str | None) -> str | None:
    if not name:
        return None
    name = _UNSAFE_FILENAME.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if name in {"", ".", ".."}:
        return None
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 190 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:200]
    return name


def _filename(part: Message) -> str | None:
    return _safe_filename(
        _param(part, "filename", "content-disposition") or _param(part, "name", "content-type")
    )


# --- bodies ---------------------------------------------------------------------------------


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    if depth > _MAX_MIME_DEPTH:
        raise MailRejected("MIME structure nested too deeply")
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for child in part.get_payload():
            if isinstance(child, Message):
                yield from _leaves(child, depth + 1)
    else:
        yield part  # message/rfc822 too: a forwarded message is an attachment, not our body


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next line."""
    lines: list[str] = []
    buffer = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line != "-- ":
            buffer += line[:-1] if delsp else line
        else:
            lines.append(buffer + line)
            buffer = ""
    if buffer:
        lines.append(buffer)
    return "\n".join(lines)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    is_html = part.get_content_type() == "text/html"
    if is_html and not charset:
        meta = _META_CHARSET.search(payload[:4096])
        charset = meta[1].decode("ascii") if meta else None
    text = decode_bytes(payload, charset).replace("\r\n", "\n").replace("\r", "\n")
    if is_html:
        return html_to_text(text)
    if str(part.get_param("format") or "").lower() == "flowed":
        text = _unflow(text, str(part.get_param("delsp") or "").lower() == "yes")
    return text


class _HtmlText(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
    _PARAGRAPH = frozenset(
        {"p", "pre", "blockquote", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    )
    _LINE = frozenset(
        {
            *("div", "li", "tr", "dd", "dt", "section", "article", "header", "footer"),
            *("address", "center", "form", "fieldset", "caption"),
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []  # (blockquote depth, text)
        self.current: list[str] = []
        self.current_depth = 0
        self.quote_depth = 0
        self.skip = 0
        self.pre = 0

    def push_line(self) -> None:
        self.lines.append((self.current_depth, "".join(self.current)))
        self.current = []
        self.current_depth = self.quote_depth

    def end_line(self) -> None:
        if "".join(self.current).strip():
            self.push_line()
        else:
            self.current = []
            self.current_depth = self.quote_depth

    def paragraph(self) -> None:
        self.end_line()
        if self.lines and self.lines[-1][1].strip():
            self.lines.append((0, ""))

    def block(self, tag: str) -> None:
        if tag in self._PARAGRAPH:
            self.paragraph()
        elif tag in self._LINE:
            self.end_line()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
            return
        if tag == "br":
            self.push_line()
            return
        self.block(tag)
        if tag == "blockquote":
            self.quote_depth += 1
            self.current_depth = self.quote_depth
        elif tag == "pre":
            self.pre += 1
        elif tag == "li":
            self.current.append("- ")
        elif tag in {"td", "th"} and "".join(self.current).strip():
            self.current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.push_line()
        elif tag == "hr":
            self.paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
            return
        self.block(tag)
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self.current_depth = self.quote_depth
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.current:
            self.current_depth = self.quote_depth
        data = data.replace("\xa0", " ")
        if self.pre:
            first, *rest = data.split("\n")
            self.current.append(first)
            for line in rest:
                self.push_line()
                self.current.append(line)
        else:
            self.current.append(re.sub(r"[ \t\r\n\f]+", " ", data))

    def text(self) -> str:
        self.end_line()
        out = []
        for depth, line in self.lines:
            line = line.strip()
            out.append(("> " * depth + line) if depth and line else line)
        return _tidy("\n".join(out))


_MARKED_SECTION = re.compile(
    r"<!\[(?!CDATA\[)[^\]]*\]>"
)  # Word's <![if !supportLists]>, <![endif]>


def html_to_text(markup: str) -> str:
    """Plain text of an HTML body: scripts and styles dropped, blocks on their own lines,
    blockquoted history prefixed with "> " like a plain-text reply."""
    parser = _HtmlText()
    try:
        parser.feed(_MARKED_SECTION.sub("", markup))
        parser.close()
    except AssertionError:  # html.parser on some malformed declarations; keep the words at least
        return _tidy(html.unescape(re.sub(r"<[^>]*>", " ", markup)).replace("\xa0", " "))
    return parser.text()


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --- quoted history -------------------------------------------------------------------------

_ORIGINAL_MARK = re.compile(
    r"^\s*-{2,}\s*(原始邮件|原始郵件|邮件原件|郵件原件|原邮件|Original\s+Message)\s*-{2,}\s*$", re.I
)
_RULE = re.compile(r"^\s*_{20,}\s*$")
_FROM_LINE = re.compile(r"^\s*\*?\s*(From|发件人|發件人|寄件者|寄件人)\s*\*?\s*[:：]", re.I)
_SENT_LINE = re.compile(
    r"^\s*\*?\s*(Sent|Date|发送时间|發送時間|日期|时间|時間|寄件日期|送出日期)\s*\*?\s*[:：]", re.I
)
_ATTRIBUTION = re.compile(
    r"^\s*(On\s.{1,300}\swrote|(在|.{0,200}于).{0,300}(写道|寫道))\s*[:：]\s*$", re.I
)


def _starts_history(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _ORIGINAL_MARK.match(line):
        return True
    following = lines[i + 1 : i + 5]
    if _RULE.match(line) and any(_FROM_LINE.match(n) for n in following[:2]):
        return True
    if _FROM_LINE.match(line) and any(_SENT_LINE.match(n) for n in following):
        return True
    if _ATTRIBUTION.match(line):
        return True
    # Gmail wraps a long attribution ("On Mon, ... <wang@\nexample.com> wrote:") onto two lines.
    return bool(
        re.match(r"^\s*(On\s|在)", line)
        and i + 1 < len(lines)
        and _ATTRIBUTION.match(line.rstrip() + " " + lines[i + 1].strip())
    )


def strip_quoted(text: str) -> str:
    """The new part of a reply: cut at the first history marker ("-----原始邮件-----",
    "在 ... 写道：", "On ... wrote:", an Outlook From:/Sent: block) and drop "> " lines."""
    lines = text.split("\n")
    cut = next((i for i in range(len(lines)) if _starts_history(lines, i)), len(lines))
    return _tidy("\n".join(line for line in lines[:cut] if not line.lstrip().startswith(">")))


# --- parse ----------------------------------------------------------------------------------


def _attachment(part: Message, index: int) -> Attachment:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        forwarded = inner[0] if isinstance(inner, list) and inner else None
        content = forwarded.as_bytes() if isinstance(forwarded, Message) else b""
    else:
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
    name = _filename(part)
    if name is None:
        ext = (
            ".eml" if content_type == "message/rfc822" else mimetypes.guess_extension(content_type)
        )
        name = f"attachment-{index}{ext or '.bin'}"
    cid = _ids(_raw_header(part, "content-id"))
    if not cid:
        raw_cid = (_raw_header(part, "content-id") or "").strip()
        cid = [raw_cid] if raw_cid else []
    return Attachment(
        filename=name,
        content_type=content_type,
        content=content,
        inline=part.get_content_disposition() == "inline" or bool(cid),
        content_id=cid[0] if cid else None,
    )


def parse_message(raw: bytes) -> InboundMail:
    """Read one raw RFC 5322 message. Raises MailRejected when it is too big or carries too many
    attachments; anything else malformed is read as well as it can be."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MailRejected(f"message larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB")
    try:
        msg = BytesParser(policy=email.policy.compat32).parsebytes(raw)
        leaves = list(_leaves(msg))
    except RecursionError:
        raise MailRejected("MIME structure nested too deeply") from None

    plain: list[str] = []
    rich: list[str] = []
    attachment_parts: list[Message] = []
    for part in leaves:
        content_type = part.get_content_type()
        is_body = (
            content_type in {"text/plain", "text/html"}
            and part.get_content_disposition() != "attachment"
            and _filename(part) is None
        )
        if is_body:
            (plain if content_type == "text/plain" else rich).append(_part_text(part))
        else:
            attachment_parts.append(part)
    if len(attachment_parts) > MAX_ATTACHMENTS:
        raise MailRejected(f"more than {MAX_ATTACHMENTS} attachments")
    full_text = _tidy("\n\n".join(t for t in (plain or rich) if t.strip()))

    senders = _addresses(msg, "from") or _addresses(msg, "sender")
    from_name, from_address = senders[0] if senders else ("", "")
    if not from_address:
        return_path = _ids(_raw_header(msg, "return-path"))
        from_address = return_path[0].lower() if return_path else ""
    reply_to = _addresses(msg, "reply-to")
    message_ids = _ids(_raw_header(msg, "message-id"))
    return InboundMail(
        message_id=message_ids[0] if message_ids else fallback_message_id(raw),
        in_reply_to=tuple(_ids(_raw_header(msg, "in-reply-to"))),
        references=tuple(_ids(" ".join(_raw_headers(msg, "references")))),
        subject=decode_header_text(_raw_header(msg, "subject") or "").strip(),
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to[0][1] if reply_to and reply_to[0][1] != from_address else None,
        to=tuple(address for _, address in _addresses(msg, "to")),
        cc=tuple(address for _, address in _addresses(msg, "cc")),
        date=_date(_raw_header(msg, "date")),
        text=strip_quoted(full_text),
        full_text=full_text,
        attachments=tuple(_attachment(p, i) for i, p in enumerate(attachment_parts, start=1)),
        auto_submitted=_is_automatic(msg, from_address),
    )


# --- ticket numbers -------------------------------------------------------------------------

_NUMBER = r"[A-Z]{2,4}[0-9]{8}-[0-9]{4,}"
_BRACKETED_NUMBER = re.compile(rf"[\[【(（]\s*({_NUMBER})\s*[\]】)）]", re.I)
_BARE_NUMBER = re.compile(rf"(?<![A-Za-z0-9])({_NUMBER})", re.I)


def ticket_number_in(subject: str) -> str | None:
    """The ticket number in a subject ("回复：[GD20261124-0001] 空调不制冷了" -> "GD20261124-0001").

    Full-width characters are read as ASCII and the result is upper-cased; a bracketed number wins
    over a bare one (a serial number in the text looks the same); else the first one."""
    text = unicodedata.normalize("NFKC", subject)
    found = _BRACKETED_NUMBER.search(text) or _BARE_NUMBER.search(text)
    return found[1].upper() if found else None


# --- replies --------------------------------------------------------------------------------

_OUT_POLICY = email.policy.default.clone(cte_type="7bit")  # base64/QP bodies: safe on any relay
_MAX_REFERENCES = 20


def _bare_id(mid: str) -> str | None:
    mid = mid.strip().removeprefix("<").removesuffix(">").strip()
    if not mid or any(ch.isspace() or ch in "<>" for ch in mid):
        return None
    return mid


def _references(references: Sequence[str], in_reply_to: str | None) -> list[str]:
    ids = [m for m in (_bare_id(r) for r in references) if m]
    parent = _bare_id(in_reply_to) if in_reply_to else None
    if parent and (not ids or ids[-1] != parent):
        ids.append(parent)
    unique = list(dict.fromkeys(ids))
    if len(unique) > _MAX_REFERENCES:  # keep the thread root and the recent ones (RFC 5322 3.6.4)
        unique = [unique[0], *unique[-(_MAX_REFERENCES - 1) :]]
    return unique


def _html_body(body_text: str, progress_url: str | None, qr_cid: str | None) -> str:
    paragraphs = "".join(
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>"
        for p in re.split(r"\n{2,}", body_text.strip())
        if p.strip()
    )
    extra = ""
    if progress_url:
        url = html.escape(progress_url, quote=True)
        extra += f'<p>查看处理进度：<a href="{url}">{url}</a></p>'
    if qr_cid:
        extra += f'<p><img src="cid:{qr_cid}" alt="扫码查看处理进度" width="160" height="160"></p>'
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family: sans-serif; line-height: 1.6">'
        f"{paragraphs}{extra}</body></html>"
    )


def compose_reply(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    body_text: str,
    in_reply_to: str | None,
    references: Sequence[str] = (),
    qr_png: bytes | None = None,
    progress_url: str | None = None,
    auto_submitted: bool = False,
) -> EmailMessage:
    """A UTF-8 reply in the customer's thread: text and HTML alternatives, the progress link in
    both, the QR code (when given) embedded in the HTML as an inline image.

    `from_address`/`to_address` may carry a display name ("经纬客服 <service@example.com>").
    `in_reply_to` and `references` are message ids with or without <>. Set `auto_submitted` for
    replies no person wrote (an acknowledgement), so the other side's auto-responders stay quiet."""
    sender = parseaddr(from_address)[1]
    if "@" not in sender:
        raise ValueError(f"from_address has no mail domain: {from_address!r}")
    if progress_url is not None and not progress_url.startswith(("https://", "http://")):
        raise ValueError("progress_url must be an http(s) URL")
    domain = sender.rsplit("@", 1)[1]

    msg = EmailMessage(policy=_OUT_POLICY)
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Subject"] = re.sub(r"[\r\n]+", " ", subject).strip()
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=domain)
    parent = _bare_id(in_reply_to) if in_reply_to else None
    if parent:
        msg["In-Reply-To"] = f"<{parent}>"
    thread = _references(references, in_reply_to)
    if thread:
        msg["References"] = " ".join(f"<{m}>" for m in thread)
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"  # Exchange: no out-of-office to this

    text = body_text.rstrip()
    if progress_url:
        text += f"\n\n查看处理进度：{progress_url}"
    msg.set_content(text + "\n", charset="utf-8")
    qr_cid = make_msgid(domain=domain)[1:-1] if qr_png else None
    msg.add_alternative(
        _html_body(body_text, progress_url, qr_cid), subtype="html", charset="utf-8"
    )
    html_part = msg.get_body(preferencelist=("html",))
    if qr_png and qr_cid and html_part is not None:
        html_part.add_related(
            qr_png,
            maintype="image",
            subtype="png",
            cid=f"<{qr_cid}>",
            disposition="inline",
            filename="progress-qr.png",
        )
    return msg


class _WireMessage(EmailMessage):
    """Django's SMTP backend flattens with `as_bytes(linesep="\\r\\n")`, which the stdlib
    signature lacks."""

    def as_bytes(
        self, unixfrom: bool = False, policy: Policy | None = None, *, linesep: str | None = None
    ) -> bytes:
        policy = policy or self.policy
        if linesep is not None:
            policy = policy.clone(linesep=linesep)
        return super().as_bytes(unixfrom, policy)


class PrebuiltEmail(DjangoEmailMessage):
    """A message from `compose_reply` in the shape Django's mail backends send (smtp, console,
    file, locmem: `mail.outbox` in tests). `subject`, `body` (the text part), `from_email` and
    `to` are filled for assertions and the envelope; the bytes sent are the composed message."""

    def __init__(self, message: EmailMessage, connection: Any = None) -> None:
        text_part = message.get_body(preferencelist=("plain",))
        super().__init__(
            subject=str(message["Subject"] or ""),
            body=text_part.get_content() if text_part is not None else "",
            from_email=parseaddr(str(message["From"] or ""))[1],
            to=[a for _, a in getaddresses([str(v) for v in message.get_all("To", [])]) if a],
            connection=connection,
        )
        self.prebuilt = message

    def message(self) -> Any:  # type: ignore[override]  # not a SafeMIME*, but flattens the same
        parser = BytesParser(_class=_WireMessage, policy=self.prebuilt.policy)
        return parser.parsebytes(self.prebuilt.as_bytes())


def send_reply(message: EmailMessage, *, connection: Any = None) -> int:
    """Send a composed reply through Django's mail connection (settings EMAIL_BACKEND, EMAIL_HOST,
    EMAIL_PORT, EMAIL_HOST_USER/PASSWORD, EMAIL_USE_TLS/SSL). Returns the number sent (1).
    Errors propagate (fail_silently=False): a task calling this should retry."""
    connection = connection or get_connection()
    return int(connection.send_messages([PrebuiltEmail(message, connection=connection)]) or 0)
