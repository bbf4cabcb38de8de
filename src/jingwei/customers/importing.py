"""Reading and checking customer import files (.xlsx, .csv): no database, no models.

Three steps, each usable on its own by the import service:

- `read_table(data, filename)` turns the uploaded bytes into a `Table`: the header texts and the
  non-empty data rows, each with the row number the user sees in Excel (the header is usually
  row 1). Anything wrong with the file as a whole raises `ImportFileError` with a Chinese message
  and a stable `code`; the limits in `Limits` bound bytes, rows, columns, cell length and, for
  .xlsx, the uncompressed size of every part of the zip (checked before openpyxl opens it, and
  enforced while reading since `zipfile` never inflates a member past its declared size).
- `map_columns(table, mapping)` decides which column feeds which customer field, from the
  caller's explicit mapping or from the Chinese/English header aliases in `ALIASES`. Columns it
  does not recognise are reported, not fatal; a missing name column or a file with no identity
  column (phone, email, WeChat unionid, WeCom external_userid) is fatal.
- `validate_rows(table, columns, levels=...)` normalises every row (phones, emails, tags, Excel
  quirks) into `CustomerRow`s and reports each bad value as a `RowError`
  `{row, column, value, reason}`; a row with any error is left out of the good rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import unicodedata
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath, PureWindowsPath
from typing import Literal, TypedDict

from openpyxl import load_workbook

from jingwei.core.errors import DomainError

MiB = 1024 * 1024

# Excel's own sheet size: a row or column number past these cannot come from a real workbook.
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384


class ImportFileError(DomainError):
    """The file as a whole cannot be imported (format, encoding, size, structure or columns).

    `message` is Chinese and meant for the person who uploaded the file; `code` is stable."""

    status = 422
    default_code = "import_file_invalid"


@dataclass(frozen=True)
class Limits:
    """Bounds on what `read_table` accepts. The defaults suit an upload form."""

    max_bytes: int = 20 * MiB
    max_rows: int = 200_000  # data rows, not counting the header or blank rows
    max_columns: int = 100
    max_cell_chars: int = 32_767  # Excel's own limit for one cell
    # .xlsx only: uncompressed sizes declared in the zip directory, checked before opening.
    max_zip_entries: int = 10_000
    max_sheet_xml_bytes: int = 256 * MiB  # each xl/worksheets/*.xml (streamed)
    max_shared_strings_bytes: int = 64 * MiB  # xl/sharedStrings.xml (openpyxl loads it whole)
    # Styles, workbook, rels, ... (loaded whole). Parts that barely compress (pictures) are
    # exempt: at most 4x their stored size, and the stored size is within max_bytes.
    max_other_xml_bytes: int = 16 * MiB
    max_uncompressed_bytes: int = 512 * MiB  # every part together
    # The longest stretch of sheet XML without a new <row> (checked in every sheet before
    # openpyxl opens the file): it builds each row's element tree in memory whole.
    max_row_xml_bytes: int = 8 * MiB


DEFAULT_LIMITS = Limits()

CellValue = str | int | float | bool | datetime | date | time | timedelta | None


@dataclass(frozen=True)
class SourceRow:
    """One non-empty data row: `number` is the row as Excel shows it (header row included in the
    count, blank rows too); `cells` has one value per column of `Table.headers`."""

    number: int
    cells: tuple[CellValue, ...]


@dataclass(frozen=True)
class Table:
    """A sheet read from a file. Cells keep their type (.xlsx numbers and dates stay numbers and
    datetimes; every .csv cell is a str, exactly as in the file)."""

    headers: tuple[str, ...]  # trimmed header texts; "" for a column with data but no header
    header_row: int
    rows: tuple[SourceRow, ...]
    format: Literal["xlsx", "csv"]
    encoding: str | None = None  # csv: "utf-8", "utf-8-sig", "utf-16" or "gb18030"
    delimiter: str | None = None  # csv: ",", "\t" or ";"
    sheet: str | None = None  # xlsx: the sheet read
    sheets: tuple[str, ...] = ()  # xlsx: every worksheet in the workbook, in order


# --------------------------------------------------------------------------------------------
# Reading


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and also password-protected .xlsx
_ZIP_MAGIC = b"PK\x03\x04"
_XLSX_EXTENSIONS = {".xlsx", ".xltx"}
_CSV_EXTENSIONS = {".csv", ".txt", ".tsv"}
_MACRO_EXTENSIONS = {".xlsm", ".xltm", ".xlam"}
_DELIMITERS = (",", "\t", ";")

# Characters that count as blank at the ends of a cell: whitespace (incl. full-width U+3000 and
# no-break U+00A0), the BOM and the zero-width ones Excel and WeChat copy-paste leave behind.
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u00ad"
_STRIP = " \t\r\n\v\f\u3000\u00a0\u2002\u2003\u2009\u202f" + _INVISIBLE


def read_table(
    data: bytes,
    filename: str,
    *,
    sheet: str | None = None,
    header_row: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Table:
    """Read an uploaded .xlsx or .csv file. `sheet` picks an .xlsx worksheet by name (default:
    the first). The header is the first non-blank row, or the first at or after `header_row`
    (for templates with a title row above the header); rows above it are not data.
    Raises ImportFileError for anything that makes the file unreadable as a whole."""
    if not data:
        raise ImportFileError("文件为空", code="empty_file")
    if len(data) > limits.max_bytes:
        raise ImportFileError(
            f"文件大小 {_size(len(data))} 超过上限 {_size(limits.max_bytes)}",
            code="file_too_large",
        )
    ext = _extension(filename)
    if ext == ".xls" or (ext in _XLSX_EXTENSIONS and data.startswith(_OLE_MAGIC)):
        raise ImportFileError(
            "不支持 Excel 97-2003 (.xls) 格式或带密码的工作簿，请在 Excel 中另存为 .xlsx 后再导入",
            code="legacy_excel",
        )
    if ext in _MACRO_EXTENSIONS:
        raise ImportFileError(
            "出于安全考虑不接受带宏的工作簿 (.xlsm)，请另存为不含宏的 .xlsx 后再导入",
            code="macro_workbook",
        )
    if ext == ".xlsb":
        raise ImportFileError(
            "不支持 Excel 二进制工作簿 (.xlsb)，请另存为 .xlsx 后再导入", code="unsupported_format"
        )
    if ext in _XLSX_EXTENSIONS:
        if not data.startswith(_ZIP_MAGIC):
            raise ImportFileError(
                "文件扩展名是 .xlsx，但内容不是 Excel 工作簿（可能已损坏或被改过扩展名）",
                code="corrupt_file",
            )
        return _read_xlsx(data, sheet=sheet, header_row=header_row, limits=limits)
    if ext in _CSV_EXTENSIONS:
        if data.startswith(_ZIP_MAGIC) or data.startswith(_OLE_MAGIC):
            raise ImportFileError(
                f"文件扩展名是 {ext}，但内容是 Excel 工作簿，请将扩展名改为 .xlsx 后再导入",
                code="wrong_extension",
            )
        return _read_csv(data, header_row=header_row, limits=limits)
    shown = ext or "（无扩展名）"
    raise ImportFileError(
        f"不支持的文件类型 {shown}，只能导入 .xlsx 或 .csv 文件", code="unsupported_format"
    )


def _extension(filename: str) -> str:
    # Browsers may send a whole Windows path; both separators count.
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    return PurePosixPath(name.strip().strip(_STRIP)).suffix.lower()


def _size(n: int) -> str:
    if n >= MiB:
        return f"{n / MiB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} 字节"


def _column_letter(index: int) -> str:
    """0-based column index → Excel letters (0 → A, 26 → AA)."""
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _is_blank(value: CellValue) -> bool:
    return value is None or (isinstance(value, str) and not value.strip(_STRIP))


def _build_table(
    records: Iterable[tuple[int, Sequence[CellValue]]],
    limits: Limits,
    *,
    header_row: int | None = None,
    fmt: Literal["xlsx", "csv"],
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    sheets: tuple[str, ...] = (),
) -> Table:
    """Header = the first non-blank row (at or after `header_row`); blank rows are skipped, and
    keep their numbers."""
    header: tuple[str, ...] | None = None
    first_row = header_row or 1
    header_row = 0
    rows: list[tuple[int, tuple[CellValue, ...]]] = []
    width = 0
    for number, cells in records:
        if number > EXCEL_MAX_ROWS:
            raise ImportFileError(
                f"工作表的行号超过了 Excel 的上限 {EXCEL_MAX_ROWS} 行，文件可能已损坏",
                code="too_many_rows",
            )
        last = -1
        for i, value in enumerate(cells):
            if not _is_blank(value):
                last = i
                if isinstance(value, str) and len(value) > limits.max_cell_chars:
                    raise ImportFileError(
                        f"第 {number} 行 {_column_letter(i)} 列的内容有 {len(value)} 个字符，"
                        f"超过单元格上限 {limits.max_cell_chars} 个字符",
                        code="cell_too_long",
                    )
        if last < 0 or number < first_row:
            continue
        if last + 1 > limits.max_columns:
            raise ImportFileError(
                f"第 {number} 行有 {last + 1} 列，超过上限 {limits.max_columns} 列",
                code="too_many_columns",
            )
        if header is None:
            header = tuple(_clean_header(v) for v in cells[: last + 1])
            header_row = number
            continue
        if len(rows) >= limits.max_rows:
            raise ImportFileError(
                f"数据超过 {limits.max_rows} 行的上限，请拆分成多个文件分批导入",
                code="too_many_rows",
            )
        # Blank cells past the last value are kept (a CSV cell stays "") up to the column limit.
        rows.append((number, tuple(cells[: limits.max_columns])))
        width = max(width, last + 1)
    if header is None:
        raise ImportFileError("文件里没有任何内容（连表头都没有）", code="empty_file")
    width = max(width, len(header))
    headers = header + ("",) * (width - len(header))
    return Table(
        headers=headers,
        header_row=header_row,
        rows=tuple(
            SourceRow(n, cells[:width] + (None,) * (width - len(cells))) for n, cells in rows
        ),
        format=fmt,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        sheets=sheets,
    )


def _clean_header(value: CellValue) -> str:
    text = _to_text(value)
    for ch in _INVISIBLE:
        text = text.replace(ch, "")
    return text.strip(_STRIP)


# ---- CSV


def _read_csv(data: bytes, *, header_row: int | None, limits: Limits) -> Table:
    text, encoding = _decode(data)
    if "\x00" in text:
        raise ImportFileError("文件包含二进制内容，不是文本格式的 CSV 文件", code="binary_content")
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _build_table(
            enumerate(reader, start=1),
            limits,
            header_row=header_row,
            fmt="csv",
            encoding=encoding,
            delimiter=delimiter,
        )
    except csv.Error as exc:
        detail = "单元格内容过长" if "field larger" in str(exc) else "引号不匹配或格式不正确"
        raise ImportFileError(
            f"CSV 文件第 {reader.line_num} 行（按文本行计）附近{detail}，无法读取",
            code="malformed_csv",
        ) from exc


def _decode(data: bytes) -> tuple[str, str]:
    """Strict UTF-8 (with or without BOM), UTF-16 with BOM, then GB18030 (a superset of GBK).
    A GBK file whose bytes happen to be valid UTF-8 too reads as UTF-8: that cannot be told."""
    bom = None
    if data.startswith(codecs.BOM_UTF8):
        bom = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        bom = "utf-16"
    try:
        if bom == "utf-8-sig":
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), bom
        if bom == "utf-16":
            return data.decode("utf-16"), bom
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if bom is not None:  # the file says what it is: do not guess past that
            raise ImportFileError(
                f"文件标明是 {bom.upper()} 编码，但第 {exc.start + 1} 个字节起内容无效，文件可能已损坏",
                code="unknown_encoding",
            ) from exc
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        pass
    raise ImportFileError(
        "无法识别文件编码，请在 Excel 中另存为“CSV UTF-8（逗号分隔）”或 .xlsx 后再导入",
        code="unknown_encoding",
    )


def _sniff_delimiter(text: str) -> str:
    """Comma, tab or semicolon, quotes honoured: the one under which the most of the first 20
    non-blank rows share one width of two or more columns (a title row above the header does not
    count), then the one giving more columns. Comma when none splits anything."""
    sample = text[: 64 * 1024]
    truncated = len(text) > len(sample)
    best = ","
    best_score = (0, 0)
    for delimiter in _DELIMITERS:
        records: list[list[str]] = []
        try:
            for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
                if any(cell.strip(_STRIP) for cell in record):
                    records.append(record)
                if len(records) > 20:
                    break
        except csv.Error:
            continue
        if truncated and len(records) > 1:
            records.pop()  # may be cut off mid-record
        widths = Counter(len(r) for r in records if len(r) > 1)
        if not widths:
            continue  # splits nothing: no reason to leave the default
        width, same = max(widths.items(), key=lambda item: (item[1], item[0]))
        score = (same, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


# ---- XLSX


def _read_xlsx(data: bytes, *, sheet: str | None, header_row: int | None, limits: Limits) -> Table:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:
        raise _corrupt() from exc
    with archive:
        try:
            _check_zip(archive, limits)
        except ImportFileError:
            raise
        except Exception as exc:  # a bad CRC or compression method in [Content_Types].xml
            raise _corrupt() from exc
    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles, data validation extensions, odd dates...: not ours.
            warnings.simplefilter("ignore")
            return _read_workbook(data, sheet=sheet, header_row=header_row, limits=limits)
    except ImportFileError:
        raise
    except Exception as exc:  # openpyxl raises anything from KeyError to ParseError on bad input
        raise _corrupt() from exc


def _corrupt() -> ImportFileError:
    return ImportFileError(
        "无法读取 .xlsx 文件：文件已损坏，或不是 Excel 2007 及以上版本保存的工作簿",
        code="corrupt_file",
    )


def _check_zip(archive: zipfile.ZipFile, limits: Limits) -> None:
    try:
        infos = archive.infolist()
    except Exception as exc:
        raise _corrupt() from exc
    if len(infos) > limits.max_zip_entries:
        raise ImportFileError(
            f"工作簿内部文件数 {len(infos)} 超过上限 {limits.max_zip_entries}，不予导入",
            code="zip_bomb",
        )
    names = {info.filename for info in infos}
    if any(name.lower().endswith("vbaproject.bin") for name in names):
        raise ImportFileError(
            "出于安全考虑不接受带宏的工作簿，请另存为不含宏的 .xlsx 后再导入",
            code="macro_workbook",
        )
    total = 0
    sheets = []
    for info in infos:
        total += info.file_size
        if _is_sheet_part(info.filename):
            limit, what = limits.max_sheet_xml_bytes, "工作表"
            sheets.append(info.filename)
        elif info.filename.lower() == "xl/sharedstrings.xml":
            limit, what = limits.max_shared_strings_bytes, "共享字符串表"
        elif info.file_size <= 4 * info.compress_size:
            continue  # barely compressible (pictures): cannot inflate into a bomb
        else:
            limit, what = limits.max_other_xml_bytes, "内部文件"
        if info.file_size > limit:
            raise ImportFileError(
                f"工作簿中的{what} {info.filename} 解压后有 {_size(info.file_size)}，"
                f"超过上限 {_size(limit)}，不予导入",
                code="zip_bomb",
            )
    if total > limits.max_uncompressed_bytes:
        raise ImportFileError(
            f"工作簿解压后共 {_size(total)}，超过上限 {_size(limits.max_uncompressed_bytes)}，不予导入",
            code="zip_bomb",
        )
    content_types = "[Content_Types].xml"
    if content_types in names and b"macroenabled" in archive.read(content_types).lower():
        raise ImportFileError(
            "出于安全考虑不接受带宏或二进制格式的工作簿，请另存为普通 .xlsx 后再导入",
            code="macro_workbook",
        )
    # openpyxl reads the start of every sheet when it opens the workbook, and each row's element
    # tree whole: a giant element anywhere in any sheet has to be caught first.
    for member in sheets:
        _check_row_sizes(archive, member, limits)


def _is_sheet_part(name: str) -> bool:
    name = name.lower()
    return name.startswith("xl/worksheets/") and name.count("/") == 2 and name.endswith(".xml")


_ROW_START = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,31}:)?row[\s/>]")


def _check_row_sizes(archive: zipfile.ZipFile, member: str, limits: Limits) -> None:
    """Stream the sheet XML once, refusing it if any stretch between two <row> starts (or before
    the first, or after the last) is longer than `max_row_xml_bytes`."""
    chunk_size = 1 * MiB
    overlap = 48
    with archive.open(member) as fh:
        pos = 0  # bytes read so far
        last = 0  # offset of the latest <row> start
        tail = b""
        while chunk := fh.read(chunk_size):
            buffer = tail + chunk
            base = pos - len(tail)
            for match in _ROW_START.finditer(buffer):
                start = base + match.start()
                if start <= last:
                    continue
                if start - last > limits.max_row_xml_bytes:
                    break
                last = start
            pos += len(chunk)
            if pos - last > limits.max_row_xml_bytes:
                raise ImportFileError(
                    f"工作表中有一行的数据超过 {_size(limits.max_row_xml_bytes)}，不予导入",
                    code="zip_bomb",
                )
            tail = buffer[-overlap:]


def _read_workbook(
    data: bytes, *, sheet: str | None, header_row: int | None, limits: Limits
) -> Table:
    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    try:
        worksheets = list(workbook.worksheets)
        names = tuple(str(ws.title) for ws in worksheets)
        if not worksheets:
            raise ImportFileError("工作簿中没有工作表", code="empty_file")
        if sheet is None:
            worksheet = worksheets[0]
        else:
            matches = [ws for ws in worksheets if ws.title == sheet]
            if not matches:
                raise ImportFileError(
                    f"工作簿中没有名为「{sheet}」的工作表，现有工作表：{'、'.join(names)}",
                    code="sheet_not_found",
                )
            worksheet = matches[0]
        # The <dimension> element may lie (some generators write A1); read what is there.
        worksheet.reset_dimensions()
        records = enumerate(worksheet.iter_rows(min_row=1, min_col=1, values_only=True), start=1)
        return _build_table(
            records,
            limits,
            header_row=header_row,
            fmt="xlsx",
            sheet=str(worksheet.title),
            sheets=names,
        )
    finally:
        workbook.close()


# --------------------------------------------------------------------------------------------
# Columns

FIELDS: dict[str, str] = {
    "name": "姓名",
    "company": "公司",
    "phone": "手机号",
    "email": "邮箱",
    "wechat_unionid": "微信 UnionID",
    "wecom_external_userid": "企业微信外部联系人 ID",
    "region": "区域",
    "owner": "负责人工号",
    "level": "等级",
    "source": "来源",
    "tags": "标签",
    "note": "备注",
}
IDENTITY_FIELDS = ("phone", "email", "wechat_unionid", "wecom_external_userid")

ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "客户姓名", "联系人", "联系人姓名", "name", "full name",
             "customer name", "contact name"),
    "company": ("公司", "公司名称", "单位", "工作单位", "企业名称", "company", "company name",
                "organization", "organisation"),
    "phone": ("手机", "手机号", "手机号码", "电话", "联系电话", "移动电话", "电话号码", "phone",
              "mobile", "mobile phone", "cellphone", "tel", "telephone", "phone number"),
    "email": ("邮箱", "电子邮箱", "邮件", "电子邮件", "邮箱地址", "email", "e-mail", "mail",
              "email address"),
    "wechat_unionid": ("微信unionid", "微信 UnionID", "unionid", "union id", "wechat unionid",
                       "wechat_unionid"),
    "wecom_external_userid": ("企业微信", "企业微信ID", "企微", "企微ID", "企业微信外部联系人",
                              "企业微信外部联系人ID", "external_userid", "external userid",
                              "wecom external_userid", "wecom_external_userid"),
    "region": ("区域", "地区", "所属区域", "大区", "region", "area"),
    "owner": ("负责人", "负责人工号", "归属人", "跟进人", "所属员工", "工号", "员工工号", "owner",
              "owner no", "owner employee no", "employee no"),
    "level": ("等级", "客户等级", "级别", "level", "grade", "tier", "customer level"),
    "source": ("来源", "客户来源", "渠道", "来源渠道", "source", "channel"),
    "tags": ("标签", "客户标签", "tags", "tag", "labels", "label"),
    "note": ("备注", "备注信息", "说明", "note", "notes", "remark", "remarks", "comment",
             "comments", "memo"),
}  # fmt: skip

_HEADER_NOISE = re.compile(r"\([^)]*\)|【[^】]*】|[\s*_\-.:：]")


def _header_key(text: str) -> str:
    """A header as a comparable key: NFKC, case-folded, without notes in brackets, spaces or
    punctuation ("手机号（必填）" → "手机号", "＊手 机" → "手机", "Phone_Number" → "phonenumber")."""
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", text).casefold())


_ALIAS_KEYS: dict[str, str] = {
    _header_key(alias): field_name
    for field_name, aliases in ALIASES.items()
    for alias in (*aliases, field_name)
}


@dataclass(frozen=True)
class ColumnMap:
    """Which column (index into `headers`) feeds which field."""

    headers: tuple[str, ...]
    fields: Mapping[str, int]
    unknown: tuple[str, ...] = ()  # headers matching no field (their data is not imported)
    ignored: tuple[str, ...] = ()  # headers the caller's mapping said to skip

    def header(self, field_name: str) -> str:
        return self.headers[self.fields[field_name]]


def _column_label(headers: Sequence[str], index: int) -> str:
    return headers[index] or f"（{_column_letter(index)} 列，无表头）"


def map_columns(table: Table, mapping: Mapping[str, str | None] | None = None) -> ColumnMap:
    """Map the table's columns to customer fields. `mapping` (header text → field name, or None
    to skip the column) wins over the aliases for the headers it names; other headers go by alias.
    Raises ImportFileError for an unknown field or header in `mapping`, two columns feeding one
    field, or no name column / no identity column."""
    headers = table.headers
    explicit: dict[int, str | None] = {}
    for header_text, target in (mapping or {}).items():
        if target is not None and target not in FIELDS:
            raise ImportFileError(f"未知的导入字段「{target}」", code="invalid_mapping")
        wanted = _clean_header(header_text)
        found = [i for i, h in enumerate(headers) if h == wanted]
        if not found:
            key = _header_key(wanted)
            found = [i for i, h in enumerate(headers) if h and _header_key(h) == key]
        if not found:
            raise ImportFileError(
                f"列映射中的列「{header_text}」在文件中不存在", code="invalid_mapping"
            )
        for i in found:
            explicit[i] = target

    has_data = [any(not _is_blank(row.cells[i]) for row in table.rows) for i in range(len(headers))]
    fields: dict[str, int] = {}
    unknown: list[str] = []
    ignored: list[str] = []
    for i, header_text in enumerate(headers):
        if i in explicit:
            target = explicit[i]
            if target is None:
                ignored.append(_column_label(headers, i))
                continue
        else:
            target = _ALIAS_KEYS.get(_header_key(header_text)) if header_text else None
            if target is None:
                if header_text or has_data[i]:
                    unknown.append(_column_label(headers, i))
                continue
        if target in fields:
            first = _column_label(headers, fields[target])
            raise ImportFileError(
                f"列「{first}」和「{_column_label(headers, i)}」都对应字段「{FIELDS[target]}」，"
                "请删除或重命名其中一列",
                code="duplicate_column",
            )
        fields[target] = i

    missing = []
    if "name" not in fields:
        missing.append(f"缺少必填列「{FIELDS['name']}」")
    if not any(f in fields for f in IDENTITY_FIELDS):
        labels = "、".join(FIELDS[f] for f in IDENTITY_FIELDS)
        missing.append(f"缺少身份列：{labels} 至少要有一列")
    if missing:
        raise ImportFileError("；".join(missing), code="missing_columns")
    return ColumnMap(headers=headers, fields=fields, unknown=tuple(unknown), ignored=tuple(ignored))


# --------------------------------------------------------------------------------------------
# Rows


class RowError(TypedDict):
    row: int  # as Excel shows it; the header is row 1 in the usual layout
    column: str  # header text as in the file
    value: str  # the cell as text (after trimming)
    reason: str  # Chinese


@dataclass(frozen=True)
class CustomerRow:
    """A row that passed every check, normalised. Empty text means the cell was empty."""

    row: int
    name: str
    company: str = ""
    phone: str = ""  # "13800001234" for mainland mobiles, E.164 ("+85291234567") otherwise
    email: str = ""  # domain in lower case
    wechat_unionid: str = ""
    wecom_external_userid: str = ""
    region: str = ""
    owner: str = ""  # employee number
    level: str = ""  # as spelled in the allowed list
    source: str = ""
    tags: tuple[str, ...] = ()
    note: str = ""


MAX_LENGTHS: dict[str, int] = {
    "name": 100,
    "company": 200,
    "email": 254,
    "wechat_unionid": 128,
    "wecom_external_userid": 128,
    "region": 100,
    "owner": 64,
    "level": 32,
    "source": 50,
    "note": 500,
}
MAX_TAG_LENGTH = 50
MAX_TAGS = 50

TAG_SEPARATORS = re.compile(r"[,，;；、|｜]")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_E164_DIGITS = re.compile(r"[1-9]\d{6,14}")
_PHONE_NOISE = re.compile(r"[\s\-‐‑‒–—―−~()\[\]]")
_SCIENTIFIC = re.compile(r"\d(?:\.\d+)?[eE]\+?\d{1,2}")
_FLOAT_TEXT = re.compile(r"(\d+)\.0+")
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_OPEN_ID = re.compile(r"[A-Za-z0-9_@.:-]+")
_EXCEL_TEXT_FORMULA = re.compile(r'="(.*)"', re.DOTALL)


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _to_text(value: CellValue) -> str:
    """A cell as the text Excel shows by default: whole floats without ".0" (a phone typed as a
    number reads back as 13800001234.0), dates as ISO dates."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e17:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        if value.time() == time() and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def cell_text(value: CellValue, *, multiline: bool = False) -> str:
    """A cell cleaned the way every field wants it: trimmed (full-width spaces, BOM and zero-width
    characters too), a CSV `="..."` text wrapper or a leading apostrophe removed, whitespace-only
    cells empty. Single-line fields also get inner runs of whitespace collapsed to one space."""
    text = _to_text(value)
    for ch in _INVISIBLE:
        text = text.replace(ch, "")
    text = text.strip(_STRIP)
    wrapped = _EXCEL_TEXT_FORMULA.fullmatch(text)
    if wrapped:
        text = wrapped.group(1).replace('""', '"').strip(_STRIP)
    if not multiline and text.startswith("'"):
        text = text[1:].strip(_STRIP)
    if not multiline:
        text = " ".join(text.split())
    return text


def normalize_phone(value: CellValue) -> str:
    """A mainland mobile as 11 digits ("+86 138-0000-1234" → "13800001234"), anything else as
    E.164 with its "+" ("00852 9123 4567" → "+85291234567"). Raises ValueError with the reason."""
    try:
        return _phone(value)
    except _Invalid as exc:
        raise ValueError(exc.reason) from None


def _phone(value: CellValue) -> str:
    if isinstance(value, datetime | date | time | timedelta):
        raise _Invalid("手机号单元格是日期/时间格式，请把该列设为文本后重新填写")
    if isinstance(value, bool):
        raise _Invalid("手机号格式不正确")
    text = unicodedata.normalize("NFKC", cell_text(value))
    if _SCIENTIFIC.fullmatch(text):
        # A number column exported to CSV as "1.38E+10": the digits past the mantissa are lost.
        mantissa, _, exponent = text.lower().partition("e")
        digits = len(mantissa.replace(".", ""))
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex only lets numbers through
            raise _Invalid("手机号格式不正确") from None
        if number != number.to_integral_value() or digits < int(exponent) + 1:
            raise _Invalid("手机号被保存成了科学计数法，数字已丢失，请把该列设为文本格式后重新导出")
        text = str(int(number))
    float_text = _FLOAT_TEXT.fullmatch(text)
    if float_text:
        text = float_text.group(1)
    compact = _PHONE_NOISE.sub("", text)
    international = None
    if compact.startswith("+"):
        international = compact[1:]
    elif compact.startswith("00"):
        international = compact[2:]
    if international is not None:
        if not international.isascii() or not international.isdigit():
            raise _Invalid("手机号格式不正确")
        if international.startswith("86"):
            if _MOBILE.fullmatch(international[2:]):
                return international[2:]
            raise _Invalid("+86 之后不是有效的 11 位大陆手机号")
        if _E164_DIGITS.fullmatch(international):
            return "+" + international
        raise _Invalid("国际号码格式不正确（应为 + 加国家码和号码，共 8-15 位数字）")
    if len(compact) == 13 and compact.startswith("86"):
        compact = compact[2:]
    if compact.isascii() and _MOBILE.fullmatch(compact):
        return compact
    if compact.isascii() and compact.isdigit() and len(compact) != 11:
        raise _Invalid(f"手机号应为 11 位数字，这里是 {len(compact)} 位")
    raise _Invalid("手机号格式不正确（应为 11 位大陆手机号，或以 + 开头的国际号码）")


def normalize_email(value: CellValue) -> str:
    """Trimmed, full-width characters folded (＠ → @), domain in lower case. Raises ValueError."""
    text = unicodedata.normalize("NFKC", cell_text(value))
    if len(text) > MAX_LENGTHS["email"]:
        raise ValueError(f"邮箱超过 {MAX_LENGTHS['email']} 个字符")
    match = _EMAIL.fullmatch(text)
    if not match or len(match.group("local")) > 64:
        raise ValueError("邮箱格式不正确")
    return f"{match.group('local')}@{match.group('domain').lower()}"


def split_tags(value: CellValue) -> tuple[str, ...]:
    """Tags separated by , ， ; ； 、 or |, trimmed, empty ones dropped, duplicates once."""
    seen: dict[str, None] = {}
    for part in TAG_SEPARATORS.split(cell_text(value)):
        tag = part.strip(_STRIP)
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def validate_rows(
    table: Table,
    columns: ColumnMap,
    *,
    levels: Iterable[str] | None = None,
) -> tuple[list[CustomerRow], list[RowError]]:
    """Check and normalise every data row. `levels` is the allowed list for the level column
    (matched ignoring case and full-width forms; None accepts any text). Rows with any error are
    left out of the good rows; errors come in row order, then column order. A phone, email,
    unionid or external_userid seen in an earlier row of the file is an error on the later row,
    naming the earlier one (whether or not that row had other errors)."""
    allowed: dict[str, str] | None = None
    if levels is not None:
        allowed = {}
        for level in levels:
            allowed.setdefault(_level_key(level), level)
    checker = _RowChecker(columns, allowed)
    good: list[CustomerRow] = []
    errors: list[RowError] = []
    for source in table.rows:
        values, row_errors = checker.check(source)
        if row_errors:
            errors.extend(row_errors)
        else:
            good.append(_customer(source.number, values))
    return good, errors


class _RowChecker:
    def __init__(self, columns: ColumnMap, allowed: dict[str, str] | None) -> None:
        self.columns = columns
        self.allowed = allowed
        self.ordered = sorted(columns.fields.items(), key=lambda item: item[1])
        # In file order: a row with no identity is reported on the leftmost identity column.
        self.identity = sorted(
            (f for f in IDENTITY_FIELDS if f in columns.fields), key=lambda f: columns.fields[f]
        )
        self.seen: dict[tuple[str, str], int] = {}

    def check(self, source: SourceRow) -> tuple[dict[str, object], list[RowError]]:
        values: dict[str, object] = {}
        failed: dict[str, RowError] = {}

        def fail(field_name: str, text: str, reason: str) -> None:
            column = self.columns.header(field_name)
            failed.setdefault(
                field_name,
                RowError(row=source.number, column=column, value=text, reason=reason),
            )

        for field_name, index in self.ordered:
            raw = source.cells[index]
            text = cell_text(raw, multiline=field_name == "note")
            if not text:
                continue
            try:
                value = _clean_field(field_name, raw, text, self.allowed)
            except _Invalid as exc:
                fail(field_name, text, exc.reason)
                continue
            values[field_name] = value
            if field_name in IDENTITY_FIELDS and isinstance(value, str):
                key = (field_name, value.casefold() if field_name == "email" else value)
                first = self.seen.setdefault(key, source.number)
                if first != source.number:
                    fail(field_name, text, f"与第 {first} 行的{FIELDS[field_name]}重复")

        if "name" not in values and "name" not in failed:
            fail("name", "", "姓名不能为空")
        if self.identity and not any(f in values or f in failed for f in self.identity):
            labels = "、".join(FIELDS[f] for f in IDENTITY_FIELDS)
            fail(self.identity[0], "", f"请至少填写一项：{labels}")
        ordered = sorted(failed.items(), key=lambda item: self.columns.fields[item[0]])
        return values, [error for _, error in ordered]


def _level_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _clean_field(
    field_name: str, raw: CellValue, text: str, allowed: dict[str, str] | None
) -> str | tuple[str, ...]:
    if field_name == "phone":
        return _phone(raw)
    if field_name == "email":
        try:
            return normalize_email(text)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    if field_name == "tags":
        tags = split_tags(text)
        if len(tags) > MAX_TAGS:
            raise _Invalid(f"标签最多 {MAX_TAGS} 个，这里有 {len(tags)} 个")
        for tag in tags:
            if len(tag) > MAX_TAG_LENGTH:
                raise _Invalid(f"标签「{tag[:20]}…」超过 {MAX_TAG_LENGTH} 个字符")
        return tags
    limit = MAX_LENGTHS[field_name]
    if len(text) > limit:
        raise _Invalid(f"{FIELDS[field_name]}超过 {limit} 个字符（当前 {len(text)} 个）")
    if field_name in ("wechat_unionid", "wecom_external_userid") and not (
        text.isascii() and _OPEN_ID.fullmatch(text)
    ):
        raise _Invalid("只能包含英文字母、数字和 _ - . : @")
    if field_name == "level" and allowed is not None:
        level = allowed.get(_level_key(text))
        if level is None:
            choices = "、".join(dict.fromkeys(allowed.values())) or "（未设置任何等级）"
            raise _Invalid(f"等级「{text}」不在允许的取值中：{choices}")
        return level
    return text


def _customer(number: int, values: Mapping[str, object]) -> CustomerRow:
    def text(name: str) -> str:
        value = values.get(name, "")
        return value if isinstance(value, str) else ""

    tags = values.get("tags", ())
    return CustomerRow(
        row=number,
        name=text("name"),
        company=text("company"),
        phone=text("phone"),
        email=text("email"),
        wechat_unionid=text("wechat_unionid"),
        wecom_external_userid=text("wecom_external_userid"),
        region=text("region"),
        owner=text("owner"),
        level=text("level"),
        source=text("source"),
        tags=tuple(str(t) for t in tags) if isinstance(tags, tuple) else (),
        note=text("note"),
    )


__all__ = [
    "ALIASES",
    "DEFAULT_LIMITS",
    "FIELDS",
    "IDENTITY_FIELDS",
    "MAX_LENGTHS",
    "CellValue",
    "ColumnMap",
    "CustomerRow",
    "ImportFileError",
    "Limits",
    "RowError",
    "SourceRow",
    "Table",
    "cell_text",
    "map_columns",
    "normalize_email",
    "normalize_phone",
    "read_table",
    "split_tags",
    "validate_rows",
]
