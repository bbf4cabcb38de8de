"""Customer import jobs (客户导入): upload, the background run, and the reads.

- `import_job_create`: the file is read and its columns checked at once (a broken file is refused
  with the reader's ImportFileError, nothing stored); then the job row and its task (a row of the
  django-tasks database queue) are written in one transaction.
- `import_job_run` (the task `customers.tasks.import_run`): claims the job with a guarded UPDATE,
  then
  1. validating: `validate_rows` (formats, in-file duplicates) and, chunk by chunk, the checks
     against the database (existing identities, region, owner, tags, the uploader's scope),
     committing `processed_rows` after every chunk so a poller sees it move;
  2. writing: with `skip_invalid` off and any row error, the job fails with the full report and
     nothing is written. Otherwise every good row goes through `resolve_in_transaction` (the one
     identity resolver) inside ONE transaction, with the job's final state and its audit event:
     a crash anywhere leaves no customer, tag or identity behind.
- reads: the jobs a reader may see, one job, its error report as CSV (PII masked unless the
  reader has customer.view_pii), and the Excel template.

Where rows land: the owner is the uploader unless the file names one by 工号 (which needs
customer.assign over that employee); the region is the one the file names (by name, or by path
such as 华东/上海 when a name repeats), else the uploader's; the department is the owner's. A row
that would create a customer the uploader could not edit, or that matches a customer outside the
uploader's scope, is a row error naming its column. Two rows of one file stating the same phone,
e-mail, unionid or external_userid: the later row is an error naming the earlier (the reader's
rule), rather than a silent merge of what may be two people typed wrong.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q, QuerySet
from django.utils import timezone
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from jingwei.audit.services import audit_record
from jingwei.core.errors import DomainError, Forbidden, Invalid, NotFound
from jingwei.core.exports import csv_document
from jingwei.core.pii import may_view_pii
from jingwei.org.models import Employee, EmployeeStatus, Region
from jingwei.org.scope import Actor, actor_for

from ..identities import IdentityInput, IdentityKind, identity_key, mask_identity
from ..importing import (
    FIELDS,
    IDENTITY_FIELDS,
    ColumnMap,
    CustomerRow,
    ImportFileError,
    RowError,
    SourceRow,
    Table,
    cell_text,
    map_columns,
    read_table,
    validate_rows,
)
from ..models import (
    Customer,
    CustomerLevel,
    CustomerTag,
    EventKind,
    Identity,
    IdentityStatus,
    ImportJob,
    ImportStatus,
    Tag,
    TagChoice,
    TagGroup,
    TagSource,
)
from .common import ASSIGN, EDIT, IMPORT, MANAGE
from .resolution import resolve_in_transaction
from .timeline import EventDraft, events_record_many

logger = logging.getLogger(__name__)


PROGRESS_EVERY = 200  # rows per committed progress step
MAX_STORED_ERRORS = 50_000  # a file of 200,000 bad rows must not become a 300 MB JSON value
FIRST_ERRORS = 20  # shown with the job; the CSV report has them all
IMPORT_TAG_GROUP = "导入标签"
IMPORT_SOURCE = "导入"  # Customer.source of a customer the import creates without a 来源 column
VALIDATING_SHARE = 20  # percent of the progress bar the validating phase takes

IDENTITY_KINDS: dict[str, str] = {
    "phone": IdentityKind.PHONE,
    "email": IdentityKind.EMAIL,
    "wechat_unionid": IdentityKind.WECHAT_UNIONID,
    "wecom_external_userid": IdentityKind.WECOM,
}
# 等级 as people write it (the labels) or as the API names it (the values).
LEVELS: dict[str, str] = {
    **{str(label): value for value, label in CustomerLevel.choices},
    **{value: value for value in CustomerLevel.values},
}
CRASHED = "导入中途出错，已全部撤销，没有写入任何数据。请稍后重试；如仍失败请联系管理员（导入编号 {job_id}）"
ERROR_REPORT_HEADER = ["行号", "列", "值", "原因"]
TEMPLATE_NOTES: dict[str, tuple[str, str]] = {
    "name": ("必填", "客户姓名或企业名称"),
    "company": ("选填", "所在公司"),
    "phone": ("身份列至少填一项", "11 位大陆手机号，或以 + 开头的国际号码；请保持文本格式"),
    "email": ("身份列至少填一项", "电子邮箱"),
    "wechat_unionid": ("身份列至少填一项", "微信开放平台 UnionID"),
    "wecom_external_userid": ("身份列至少填一项", "企业微信外部联系人 external_userid"),
    "region": ("选填", "系统中已有的区域名称；重名时写完整路径，如 华东/上海；不填为导入人所在区域"),
    "owner": ("选填", "负责人的工号；不填为导入人自己；指定他人需要“分配客户”权限"),
    "level": ("选填", "VIP、普通 或 潜在；不填为 普通"),
    "source": ("选填", f"来源渠道，如 展会、官网；不填为“{IMPORT_SOURCE}”"),
    "tags": ("选填", f"多个标签用 、 或 , 分隔；没有的标签会建在“{IMPORT_TAG_GROUP}”组；"
             "标签在多个组中重名时写成 组名/标签"),
    "note": ("选填", "备注，最多 500 字"),
}  # fmt: skip


class ImportRowError(dict[str, Any]):
    """A RowError plus the field its column feeds (to mask PII and to order by column)."""


# --- upload ----------------------------------------------------------------------------------


def import_job_create(
    *,
    actor: Actor,
    file_name: str,
    content: bytes,
    mapping: Mapping[str, str | None] | None = None,
    skip_invalid: bool = False,
) -> ImportJob:
    """Check the file now (ImportFileError, 422, names `file` or `mapping`), then store the job and
    queue its run in one transaction: the job and its task commit together or not at all."""
    from ..tasks import import_run  # the task module imports this one

    actor.require(IMPORT)
    actor.require(EDIT)
    mapping = _field_names(mapping)
    table, columns = _open(content, file_name, mapping)
    if not table.rows:
        raise ImportFileError("文件里只有表头，没有数据行", code="no_rows", field="file")
    with transaction.atomic(durable=True):
        job = ImportJob.objects.create(
            tenant_id=actor.tenant_id,
            file_name=file_name[:200],
            content=content,
            mapping=dict(mapping or {}),
            skip_invalid=skip_invalid,
            total_rows=len(table.rows),
            message=_unknown_columns_note(columns),
            created_by_id=actor.employee_id,
        )
        import_run.enqueue(job.pk)
    return job


def _field_names(mapping: Mapping[str, str | None] | None) -> dict[str, str | None] | None:
    """A mapping may name fields by key (phone) or by their Chinese label (手机号)."""
    if mapping is None:
        return None
    by_label = {label: key for key, label in FIELDS.items()}
    return {
        header: by_label.get(target, target) if target else None
        for header, target in mapping.items()
    }


def _open(
    content: bytes, file_name: str, mapping: Mapping[str, str | None] | None
) -> tuple[Table, ColumnMap]:
    try:
        table = read_table(content, file_name)
    except ImportFileError as exc:
        raise ImportFileError(exc.message, code=exc.code, field="file") from None
    try:
        columns = map_columns(table, mapping)
    except ImportFileError as exc:
        where = "mapping" if exc.code == "invalid_mapping" else "file"
        raise ImportFileError(exc.message, code=exc.code, field=where) from None
    return table, columns


def _unknown_columns_note(columns: ColumnMap) -> str:
    if not columns.unknown:
        return ""
    return f"未识别的列（不导入）：{'、'.join(columns.unknown)}"[:300]


# --- the run ---------------------------------------------------------------------------------


class _Abort(Exception):
    """A row failed while writing with skip_invalid off: roll the whole write back."""

    def __init__(self, errors: list[ImportRowError]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class _TagRef:
    name: str
    tag_id: int | None  # None: to be created in the import group
    group_id: int | None
    single: bool = False


@dataclass
class _Plan:
    """A good row, ready for the resolver."""

    row: int
    identities: list[IdentityInput]
    identity_fields: list[str]  # the field each identity came from, in the same order
    new_profile: dict[str, Any]  # if the row creates a customer
    match_profile: dict[str, Any]  # if it joins one (only what the file states, blanks filled)
    tags: list[_TagRef] = field(default_factory=list)


@dataclass
class _Context:
    """What one run needs to check rows: the uploader, the file, and the tenant's reference data."""

    job: ImportJob
    actor: Actor
    table: Table
    columns: ColumnMap
    sources: dict[int, SourceRow]
    me: Employee  # the uploader, with region and department
    region_of: Callable[[str], Region | str]
    owner_of: Callable[[str], Employee | str]
    tag_of: Callable[[str], _TagRef | str]


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run a pending job (the task's body). Returns None if it was not pending (another worker has
    it, or it ran already). Any failure ends the job as failed with a message, nothing written."""
    now = timezone.now()
    won = ImportJob.objects.filter(pk=job_id, status=ImportStatus.PENDING).update(
        status=ImportStatus.VALIDATING, started_at=now, processed_rows=0
    )
    if won != 1:
        return None
    job = ImportJob.objects.get(pk=job_id)
    actor: Actor | None = None
    try:
        actor = _uploader(job)
        table, columns = _open(bytes(job.content), job.file_name, job.mapping or None)
        ctx = _context(job, actor, table, columns)
        plans, errors = _validate(ctx)
        if errors and not job.skip_invalid:
            return _fail_with_report(job, actor, errors, columns)
        ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.WRITING, processed_rows=0)
        return _write(ctx, plans, errors)
    except _Abort as abort:
        return _fail_with_report(job, actor, abort.errors, None)
    except DomainError as exc:
        return _fail(job, actor, exc.message)
    except Exception:
        # Re-raised, so the task queue records the failure and its traceback too.
        logger.exception("customer import %s failed", job_id)
        try:
            _fail(job, actor, CRASHED.format(job_id=job_id))
        except Exception:  # the database itself is gone: the original error is the news
            logger.exception("customer import %s: could not record the failure", job_id)
        raise


def _uploader(job: ImportJob) -> Actor:
    """The uploader as they are now: a job queued by someone since frozen, or who lost the right
    to import, does not run."""
    employee = (
        Employee.objects.select_related("department", "region")
        .filter(tenant_id=job.tenant_id, pk=job.created_by_id or 0)
        .first()
    )
    if employee is None or not employee.may_sign_in:
        raise Forbidden("上传人的账号已停用或冻结，导入未执行", code="uploader_inactive")
    actor = actor_for(employee)
    if not (actor.has_perm(IMPORT) and actor.has_perm(EDIT)):
        raise Forbidden("上传人已没有导入客户的权限，导入未执行", code="permission_denied")
    return actor


def _validate(ctx: _Context) -> tuple[list[_Plan], list[ImportRowError]]:
    """Phase 1. Formats first (pure), then the database checks chunk by chunk, committing the
    progress after each chunk (the run is outside any transaction here)."""
    good, row_errors = validate_rows(ctx.table, ctx.columns, levels=LEVELS)
    errors = [_with_field(e, ctx.columns) for e in row_errors]
    by_row = {r.row: r for r in good}
    plans: list[_Plan] = []
    numbers = [source.number for source in ctx.table.rows]
    progress = Progress(ctx.job.pk, total=len(numbers))
    for start in range(0, len(numbers), PROGRESS_EVERY):
        chunk = [by_row[n] for n in numbers[start : start + PROGRESS_EVERY] if n in by_row]
        chunk_plans, chunk_errors = _check_chunk(ctx, chunk)
        plans += chunk_plans
        errors += chunk_errors
        progress.report(min(start + PROGRESS_EVERY, len(numbers)))
    _sort(errors, ctx.columns)
    return plans, errors


def _sort(errors: list[ImportRowError], columns: ColumnMap) -> None:
    """Row order, then column order, as the report reads."""
    order = dict(columns.fields)
    errors.sort(key=lambda e: (e["row"], order.get(e["field"], len(order))))


def _with_field(error: RowError, columns: ColumnMap) -> ImportRowError:
    by_header = {columns.headers[i]: name for name, i in columns.fields.items()}
    return ImportRowError(error, field=by_header.get(error["column"], ""))


def _context(job: ImportJob, actor: Actor, table: Table, columns: ColumnMap) -> _Context:
    owners: set[str] = set()
    if "owner" in columns.fields:
        index = columns.fields["owner"]
        owners = {text for s in table.rows if (text := cell_text(s.cells[index]))}
    return _Context(
        job=job,
        actor=actor,
        table=table,
        columns=columns,
        sources={s.number: s for s in table.rows},
        me=Employee.objects.select_related("region", "department").get(pk=actor.employee_id),
        region_of=_region_finder(actor.tenant_id),
        owner_of=_owner_finder(actor, owners),
        tag_of=_tag_finder(actor.tenant_id),
    )


def _error(ctx: _Context, row: int, field_name: str, reason: str) -> ImportRowError:
    column = ctx.columns.header(field_name) if field_name in ctx.columns.fields else ""
    value = ""
    if field_name in ctx.columns.fields:
        value = cell_text(ctx.sources[row].cells[ctx.columns.fields[field_name]], multiline=True)
    return ImportRowError(row=row, column=column, value=value, reason=reason, field=field_name)


def _check_chunk(
    ctx: _Context, rows: Sequence[CustomerRow]
) -> tuple[list[_Plan], list[ImportRowError]]:
    """The database checks of some good rows: who they match, where they would land, their tags."""
    plans: list[_Plan] = []
    errors: list[ImportRowError] = []
    stated: dict[int, list[tuple[str, IdentityInput, Key]]] = {}
    for r in rows:
        try:
            stated[r.row] = [
                (name, identity, _key(identity))
                for name in IDENTITY_FIELDS
                if (value := getattr(r, name))
                for identity in [IdentityInput(IDENTITY_KINDS[name], value, source="import")]
            ]
        except Invalid as exc:  # the reader let through what the identity rules refuse
            errors.append(_error(ctx, r.row, _first_identity(r), exc.message))
    keys = [key for row in stated.values() for _, _, key in row]
    owners = _identity_owners(ctx.actor.tenant_id, keys)
    editable = set(
        Customer.objects.visible_to(ctx.actor, EDIT)
        .filter(pk__in=set(owners.values()))
        .values_list("pk", flat=True)
    )
    for r in rows:
        if r.row not in stated:
            continue
        # The resolver joins the row to the owner of its first stated key that has one.
        matched = next(
            ((name, owners[key]) for name, _, key in stated[r.row] if key in owners), None
        )
        plan, row_errors = _plan(ctx, r, stated[r.row], matched=matched is not None)
        if matched is not None and matched[1] not in editable:
            row_errors.insert(
                0,
                _error(ctx, r.row, matched[0],
                       "该客户已存在，但不在您的数据范围内，请联系其负责人或主管"),
            )  # fmt: skip
        if row_errors:
            errors += row_errors
        else:
            plans.append(plan)
    return plans, errors


def _first_identity(r: CustomerRow) -> str:
    return next((name for name in IDENTITY_FIELDS if getattr(r, name)), "name")


Key = tuple[str, str, str]  # an identity's (kind, namespace, normalised value)


def _key(identity: IdentityInput) -> Key:
    key = identity_key(identity.kind, identity.value, identity.namespace)
    return (key.kind, key.namespace, key.value)


def _identity_owners(tenant_id: int, keys: Iterable[Key]) -> dict[Key, int]:
    """Key → the customer owning that active identity (a query per kind and 1,000 values)."""
    by_kind: dict[tuple[str, str], set[str]] = defaultdict(set)
    for kind, namespace, value in keys:
        by_kind[(kind, namespace)].add(value)
    active = Identity.objects.filter(tenant_id=tenant_id, status=IdentityStatus.ACTIVE)
    found: dict[Key, int] = {}
    for (kind, namespace), value_set in by_kind.items():
        values = sorted(value_set)
        for start in range(0, len(values), 1000):
            rows = active.filter(
                kind=kind, namespace=namespace, value__in=values[start : start + 1000]
            ).values_list("value", "customer_id")
            found.update(((kind, namespace, value), customer) for value, customer in rows)
    return found


def _plan(
    ctx: _Context, r: CustomerRow, stated: list[tuple[str, IdentityInput, Key]], *, matched: bool
) -> tuple[_Plan, list[ImportRowError]]:
    """The profile the resolver gets for a row, and what is wrong with where it would land. A row
    joining a known customer only fills that customer's blanks (never its owner or region if
    set); a new customer gets the defaults (owner: the uploader; region: theirs)."""
    errors: list[ImportRowError] = []
    region = owner = None
    if r.region:
        found_region = ctx.region_of(r.region)
        if isinstance(found_region, str):
            errors.append(_error(ctx, r.row, "region", found_region))
        else:
            region = found_region
    if r.owner:
        found_owner = ctx.owner_of(r.owner)
        if isinstance(found_owner, str):
            errors.append(_error(ctx, r.row, "owner", found_owner))
        else:
            owner = found_owner
    tags, tag_error = _row_tags(ctx, r.tags)
    if tag_error:
        errors.append(_error(ctx, r.row, "tags", tag_error))

    stated_fields = {
        "name": r.name,
        "company_name": r.company,
        "remark": r.note,
        "source": r.source,
    }
    common: dict[str, Any] = {k: v for k, v in stated_fields.items() if v}
    match_profile = dict(common)
    if region is not None:
        match_profile["region_id"] = region.pk
    if owner is not None:
        match_profile["owner_id"] = owner.pk
    landing_owner = owner or ctx.me
    landing_region = region or ctx.me.region
    department = landing_owner.department
    new_profile = {
        **common,
        "source": r.source or IMPORT_SOURCE,
        "level": LEVELS[r.level] if r.level else CustomerLevel.NORMAL,
        "owner_id": landing_owner.pk,
        "region_id": landing_region.pk if landing_region else None,
        "department_id": department.pk if department else None,
    }
    if not matched and not errors:
        in_scope = _lands_in_scope(
            ctx.actor,
            landing_owner.pk,
            landing_region.path if landing_region else None,
            department.path if department else None,
        )
        if not in_scope:
            where = "region" if region is not None else "owner"
            place = landing_region.name if landing_region else "（无区域）"
            errors.append(
                _error(ctx, r.row, where,
                       f"客户将归属区域「{place}」、负责人「{landing_owner.name}」，不在您的数据范围内")
            )  # fmt: skip
    plan = _Plan(
        row=r.row,
        identities=[identity for _, identity, _ in stated],
        identity_fields=[name for name, _, _ in stated],
        new_profile=new_profile,
        match_profile=match_profile,
        tags=tags,
    )
    return plan, errors


def _row_tags(ctx: _Context, names: Sequence[str]) -> tuple[list[_TagRef], str]:
    tags: list[_TagRef] = []
    for text in names:
        ref = ctx.tag_of(text)
        if isinstance(ref, str):
            return [], ref
        tags.append(ref)
    for group_id in {t.group_id for t in tags if t.single}:
        same = [t.name for t in tags if t.single and t.group_id == group_id]
        if len(same) > 1:
            listed = "、".join(f"「{n}」" for n in same)
            return [], f"标签{listed}同属一个单选标签组，只能选一个"
    return tags, ""


def _lands_in_scope(
    actor: Actor, owner_id: int, region_path: str | None, department_path: str | None
) -> bool:
    """Whether a new customer with this owner, region and department is one the actor may edit:
    the customer.edit scope rule of org.scope, for a row not yet written (the resolver re-checks
    it on the written row, inside the transaction)."""
    if owner_id == actor.employee_id:
        return True
    for g in actor.grants_of(EDIT):
        if g.scope == "tenant":
            return True
        if g.scope == "region" and g.region_path and (region_path or "").startswith(g.region_path):
            return True
        if (
            g.scope == "department"
            and g.department_path
            and (department_path or "").startswith(g.department_path)
        ):
            return True
    return False


def _region_finder(tenant_id: int) -> Callable[[str], Region | str]:
    """A region by name, or by its path of names (华东/上海, or 上海/新区 from any level down)
    when the name repeats."""
    regions = list(Region.objects.filter(tenant_id=tenant_id))
    by_id = {r.pk: r for r in regions}
    paths = [
        ("/".join(by_id[int(p)].name for p in r.path.strip("/").split("/") if int(p) in by_id), r)
        for r in regions
    ]

    def find(text: str) -> Region | str:
        parts = [p.strip() for p in text.replace("／", "/").split("/") if p.strip()]
        wanted = "/".join(parts)
        same = [r for path, r in paths if path == wanted] if len(parts) > 1 else []
        same = same or [r for path, r in paths if path.endswith("/" + wanted) or path == wanted]
        if len(same) == 1:
            return same[0]
        if not same:
            return f"区域「{text}」不存在"
        listed = "、".join(sorted(path for path, r in paths if r in same))
        return f"有多个名为「{text}」的区域，请写完整路径：{listed}"

    return find


def _owner_finder(actor: Actor, numbers: set[str]) -> Callable[[str], Employee | str]:
    """An owner by 工号: an active employee the uploader may assign customers to (themself, or
    within their customer.assign scope)."""
    employees = {
        e.employee_no: e
        for e in Employee.objects.select_related("department").filter(
            tenant_id=actor.tenant_id, employee_no__in=numbers
        )
    }
    assignable: set[int] = set()
    if actor.has_perm(ASSIGN):
        assignable = set(
            Employee.objects.visible_to(actor, ASSIGN)
            .filter(pk__in=[e.pk for e in employees.values()])
            .values_list("pk", flat=True)
        )

    def find(number: str) -> Employee | str:
        employee = employees.get(number)
        if employee is None:
            return f"工号「{number}」不存在"
        if employee.pk == actor.employee_id:
            return employee
        if employee.status != EmployeeStatus.ACTIVE:
            return f"员工「{employee.name}」（{number}）已离职，不能作为负责人"
        if employee.pk not in assignable:
            return f"您无权把客户分配给「{employee.name}」（{number}）"
        return employee

    return find


def _tag_finder(tenant_id: int) -> Callable[[str], _TagRef | str]:
    """A tag by name (any group), or by 标签组/标签 when the name repeats across groups; an
    unknown name becomes a new tag of the import group."""
    tags = list(Tag.objects.filter(tenant_id=tenant_id).select_related("group"))
    groups = set(TagGroup.objects.filter(tenant_id=tenant_id).values_list("name", flat=True))
    by_name: dict[str, list[Tag]] = defaultdict(list)
    by_group: dict[tuple[str, str], Tag] = {}
    for t in tags:
        by_name[t.name].append(t)
        by_group[(t.group.name, t.name)] = t

    def ref(t: Tag) -> _TagRef:
        return _TagRef(t.name, t.pk, t.group_id, t.group.choice == TagChoice.SINGLE)

    def find(text: str) -> _TagRef | str:
        group, slash, name = (part.strip() for part in text.partition("/"))
        if slash and group in groups:
            if (group, name) in by_group:
                return ref(by_group[(group, name)])
            return f"标签组「{group}」中没有标签「{name}」"
        same = by_name.get(text, [])
        if len(same) == 1:
            return ref(same[0])
        if len(same) > 1:
            names = "、".join(t.group.name for t in same)
            return f"标签「{text}」在多个标签组（{names}）中都有，请写成「标签组/{text}」"
        return _TagRef(text, None, None)

    return find


# --- phase 2: writing ------------------------------------------------------------------------


def _write(ctx: _Context, plans: list[_Plan], errors: list[ImportRowError]) -> ImportJob:
    """All good rows in one transaction, with the job's final state and its one audit event. A
    row the resolver refuses (a customer registered meanwhile by someone else, say) is skipped
    and reported with skip_invalid, and rolls everything back without."""
    job, actor = ctx.job, ctx.actor
    progress = Progress(job.pk, total=job.total_rows, during_transaction=True)
    refused = len({e["row"] for e in errors})  # rows phase 1 set aside count as processed
    created = updated = 0
    try:
        with transaction.atomic(durable=True):
            # Who each key belongs to now (phase 1 read it outside this transaction).
            owners = _identity_owners(
                actor.tenant_id, [_key(i) for p in plans for i in p.identities]
            )
            tags = _TagWriter(actor)
            touched: dict[int, tuple[str, int]] = {}
            for done, plan in enumerate(plans, start=1):
                matched = any(_key(i) in owners for i in plan.identities)
                try:
                    # The resolver undoes its own writes when it refuses a row (a savepoint).
                    result = resolve_in_transaction(
                        actor=actor,
                        identities=plan.identities,
                        profile=plan.match_profile if matched else plan.new_profile,
                        source="import",
                    )
                except DomainError as exc:
                    failure = _write_error(ctx, plan, exc)
                    if not job.skip_invalid:
                        raise _Abort([failure]) from exc
                    errors.append(failure)
                    continue
                finally:
                    progress.report(refused + done)
                if result.outcome == "created":
                    created += 1
                else:
                    updated += 1
                tags.add(result.customer.pk, plan.tags)
                touched.setdefault(result.customer.pk, (result.outcome, plan.row))
            tags.flush()
            _timeline(job, touched)
            _sort(errors, ctx.columns)
            job.status = ImportStatus.DONE
            job.processed_rows = job.total_rows
            job.created_count, job.updated_count = created, updated
            job.skipped_count = len({e["row"] for e in errors})
            job.errors = _stored(errors)
            job.content = b""  # the file is not kept once imported: the report is what remains
            job.finished_at = timezone.now()
            job.message = _summary(job, ctx.columns)
            job.save(
                update_fields=[
                    "status", "processed_rows", "created_count", "updated_count",
                    "skipped_count", "errors", "content", "finished_at", "message",
                ]
            )  # fmt: skip
            _audit(actor, job, "customers.import.finished", len(errors))
    finally:
        progress.close()
    return job


def _write_error(ctx: _Context, plan: _Plan, exc: DomainError) -> ImportRowError:
    """A refusal of the resolver, reported on the column it concerns."""
    where = exc.field or ""
    if where.startswith("identities.") and where.split(".")[1].isdigit():
        index = int(where.split(".")[1])
        field_name = plan.identity_fields[min(index, len(plan.identity_fields) - 1)]
    elif where == "region_id":
        field_name = "region"
    elif where in ("owner_id", "department_id") or exc.code == "out_of_scope":
        field_name = "region" if "region" in ctx.columns.fields else "owner"
    else:
        field_name = plan.identity_fields[0]
    return _error(ctx, plan.row, field_name, exc.message)


class _TagWriter:
    """Tags for the imported customers, gathered row by row and written once at the end of the
    write (a few statements, not a few per row). Missing tags are created in the 导入标签 group;
    a tag of a single-choice group replaces the customer's other tag of that group."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.group: TagGroup | None = None
        self.created: dict[str, Tag] = {}
        self.wanted: dict[int, dict[int, _TagRef]] = defaultdict(dict)  # customer → tag → ref

    def add(self, customer_id: int, refs: Sequence[_TagRef]) -> None:
        for ref in refs:
            self.wanted[customer_id][ref.tag_id or self._import_tag(ref.name).pk] = ref

    def _import_tag(self, name: str) -> Tag:
        if name not in self.created:
            if self.group is None:
                self.group, _ = TagGroup.objects.get_or_create(
                    tenant_id=self.actor.tenant_id,
                    name=IMPORT_TAG_GROUP,
                    defaults={"description": "导入客户时新建的标签"},
                )
            self.created[name], _ = Tag.objects.get_or_create(
                tenant_id=self.actor.tenant_id, group=self.group, name=name
            )
        return self.created[name]

    def flush(self) -> None:
        links: list[CustomerTag] = []
        replaced: list[int] = []
        now = timezone.now()
        customers = list(self.wanted)
        for start in range(0, len(customers), 1000):
            chunk = customers[start : start + 1000]
            have: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
            for link_id, customer_id, tag_id, group_id in CustomerTag.objects.filter(
                tenant_id=self.actor.tenant_id, customer_id__in=chunk
            ).values_list("pk", "customer_id", "tag_id", "tag__group_id"):
                have[customer_id].append((link_id, tag_id, group_id))
            for customer_id in chunk:
                wanted = self.wanted[customer_id]
                single = {ref.group_id for ref in wanted.values() if ref.single}
                present = {tag_id for _, tag_id, _ in have[customer_id]}
                replaced += [
                    link_id
                    for link_id, tag_id, group_id in have[customer_id]
                    if group_id in single and tag_id not in wanted
                ]
                links += [
                    CustomerTag(
                        tenant_id=self.actor.tenant_id,
                        customer_id=customer_id,
                        tag_id=tag_id,
                        source=TagSource.IMPORT,
                        tagged_by_id=self.actor.employee_id,
                        tagged_at=now,
                    )
                    for tag_id in wanted
                    if tag_id not in present
                ]
        for start in range(0, len(replaced), 1000):
            CustomerTag.objects.filter(pk__in=replaced[start : start + 1000]).delete()
        CustomerTag.objects.bulk_create(links, batch_size=500)


def _timeline(job: ImportJob, touched: Mapping[int, tuple[str, int]]) -> None:
    """One event per customer the import created or added to (not one per identity or tag)."""
    now = timezone.now()
    events_record_many(
        tenant_id=job.tenant_id,
        events=(
            EventDraft(
                customer_id=customer_id,
                kind=EventKind.SYSTEM,
                title=(
                    f"通过导入新建（{job.file_name} 第 {row} 行）"
                    if outcome == "created"
                    else f"通过导入补充资料（{job.file_name} 第 {row} 行）"
                ),
                occurred_at=now,
                data={"import_job_id": job.pk, "row": row, "outcome": outcome},
                channel="import",
            )
            for customer_id, (outcome, row) in touched.items()
        ),
    )


def _stored(errors: list[ImportRowError]) -> list[dict[str, Any]]:
    return [dict(e) for e in errors[:MAX_STORED_ERRORS]]


def _summary(job: ImportJob, columns: ColumnMap | None) -> str:
    parts = [f"新建 {job.created_count} 位客户，合入已有客户 {job.updated_count} 行"]
    if job.skipped_count:
        parts.append(f"跳过有错误的 {job.skipped_count} 行")
    text = "，".join(parts) + "。"
    if columns is not None and columns.unknown:
        text += _unknown_columns_note(columns) + "。"
    return text[:500]


def _audit(actor: Actor | None, job: ImportJob, action: str, error_count: int) -> None:
    # Not `subject=job`: audit.subject_location reads a model whose scope_fields name no
    # department or region (ImportJob names only its owner) as being its own department and
    # region, an id that breaks the foreign key. The job is named in `data` instead.
    audit_record(
        actor=actor,
        tenant_id=job.tenant_id,
        action=action,
        data={
            "import_job_id": job.pk,
            "file_name": job.file_name,
            "skip_invalid": job.skip_invalid,
            "total_rows": job.total_rows,
            "created": job.created_count,
            "updated": job.updated_count,
            "skipped": job.skipped_count,
            "errors": error_count,
        },
    )


def _fail_with_report(
    job: ImportJob, actor: Actor | None, errors: list[ImportRowError], columns: ColumnMap | None
) -> ImportJob:
    rows = len({e["row"] for e in errors})
    message = (
        f"发现 {len(errors)} 处错误（涉及 {rows} 行）。按“有错误则全部不导入”的设置，"
        "没有写入任何数据；请下载错误报告修正后重新上传，或选择“跳过错误行”。"
    )
    if len(errors) > MAX_STORED_ERRORS:
        message += f"错误过多，报告只保留前 {MAX_STORED_ERRORS} 条。"
    if columns is not None and columns.unknown:
        message += _unknown_columns_note(columns) + "。"
    return _fail(job, actor, message, errors=errors, skipped=0)


def _fail(
    job: ImportJob,
    actor: Actor | None,
    message: str,
    *,
    errors: list[ImportRowError] | None = None,
    skipped: int = 0,
) -> ImportJob:
    """End the job as failed, in a transaction of its own (the write, if any, has rolled back)."""
    with transaction.atomic(durable=True):
        job.status = ImportStatus.FAILED
        job.created_count = job.updated_count = 0
        job.skipped_count = skipped
        job.errors = _stored(errors or [])
        job.content = b""
        job.finished_at = timezone.now()
        job.message = message[:500]
        job.save(
            update_fields=[
                "status", "created_count", "updated_count", "skipped_count", "errors",
                "content", "finished_at", "message",
            ]
        )  # fmt: skip
        _audit(actor, job, "customers.import.failed", len(errors or []))
    return job


class Progress:
    """Commits `processed_rows` every PROGRESS_EVERY rows (and at the last), so a poller sees it
    move.

    Outside a transaction (validating) each report is its own autocommitted UPDATE. Inside the
    write transaction nothing it wrote would show before the end, so on PostgreSQL the reports go
    through a second connection of their own (autocommit); SQLite has a single writer, so there
    the writing phase shows its count only when it commits."""

    def __init__(self, job_id: int, *, total: int, during_transaction: bool = False) -> None:
        self.job_id = job_id
        self.total = total
        self.reported = 0
        self.side: BaseDatabaseWrapper | None = None
        main = connections[DEFAULT_DB_ALIAS]
        if during_transaction and main.vendor == "postgresql":
            self.side = type(main)(main.settings_dict, DEFAULT_DB_ALIAS)

    def report(self, done: int) -> None:
        if done - self.reported >= PROGRESS_EVERY or (done == self.total and done > self.reported):
            report_progress(self.job_id, done, self.side)
            self.reported = done

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def report_progress(job_id: int, done: int, side: BaseDatabaseWrapper | None = None) -> None:
    """One committed progress step (a seam for tests that watch what a poller sees)."""
    if side is None:
        ImportJob.objects.filter(pk=job_id).update(processed_rows=done)
        return
    with side.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ImportJob._meta.db_table} SET processed_rows = %s WHERE id = %s",  # noqa: S608
            [done, job_id],
        )


# --- reads -----------------------------------------------------------------------------------


def import_jobs_visible(actor: Actor) -> QuerySet[ImportJob]:
    """The jobs a reader may see: their own (with customer.import), and with customer.manage
    those of the employees within that grant's scope (the whole tenant for a tenant-wide grant)."""
    if not (actor.has_perm(IMPORT) or actor.has_perm(MANAGE)):
        actor.require(IMPORT)
    jobs = ImportJob.objects.filter(tenant_id=actor.tenant_id)
    if actor.has_perm(MANAGE):
        if any(g.scope == "tenant" for g in actor.grants_of(MANAGE)):
            return jobs
        staff = Employee.objects.visible_to(actor, MANAGE).values("pk")
        return jobs.filter(Q(created_by_id=actor.employee_id) | Q(created_by__in=staff))
    return jobs.filter(created_by_id=actor.employee_id)


def import_job_list(actor: Actor) -> QuerySet[ImportJob]:
    return import_jobs_visible(actor).defer("content", "errors")


def import_job_get(actor: Actor, job_id: int) -> ImportJob:
    job = import_jobs_visible(actor).defer("content").filter(pk=job_id).first()
    if job is None:
        raise NotFound("导入任务不存在", field="job_id")
    return job


def import_percent(job: ImportJob) -> int:
    """Progress of the whole run, 0–100: validating fills the first VALIDATING_SHARE percent."""
    if job.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return 100
    if job.status == ImportStatus.PENDING or not job.total_rows:
        return 0
    share = min(job.processed_rows, job.total_rows) / job.total_rows
    if job.status == ImportStatus.VALIDATING:
        return int(share * VALIDATING_SHARE)
    return VALIDATING_SHARE + int(share * (100 - VALIDATING_SHARE))


def import_errors_shown(
    actor: Actor | None, job: ImportJob, limit: int | None = None
) -> list[dict[str, Any]]:
    """The job's row errors as the reader may see them: identity values (phone, e-mail, unionid,
    external_userid) masked without customer.view_pii."""
    errors = job.errors[:limit] if limit is not None else job.errors
    full = may_view_pii(actor)
    out = []
    for e in errors:
        value = str(e.get("value", ""))
        kind = IDENTITY_KINDS.get(str(e.get("field", "")))
        if kind is not None and value and not full:
            value = mask_identity(kind, value)
        out.append({"row": e["row"], "column": e["column"], "value": value, "reason": e["reason"]})
    return out


def import_errors_csv(*, actor: Actor, job_id: int) -> str:
    job = import_job_get(actor, job_id)
    return csv_document(
        ERROR_REPORT_HEADER,
        ([e["row"], e["column"], e["value"], e["reason"]] for e in import_errors_shown(actor, job)),
    )


def import_template_xlsx(*, actor: Actor) -> bytes:
    """The Excel template: the headers the reader accepts (FIELDS, in order), one example row
    (the uploader's own region and 工号), and a sheet explaining each column."""
    actor.require(IMPORT)
    me = Employee.objects.select_related("region").get(pk=actor.employee_id)
    example = {
        "name": "王建国",
        "company": "上海海鸥电器有限公司",
        "phone": "13800001234",
        "email": "wang.jianguo@example.cn",
        "region": me.region.name if me.region else "",
        "owner": me.employee_no,
        "level": "VIP",
        "source": "展会",
        "tags": "高频用户、空调",
        "note": "示例行，导入前请删除",
    }
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "客户"
    bold = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for col, (key, label) in enumerate(FIELDS.items(), start=1):
        head = sheet.cell(row=1, column=col, value=label)
        head.font, head.fill = bold, header_fill
        cell = sheet.cell(row=2, column=col, value=example.get(key, ""))
        if key in IDENTITY_FIELDS or key == "owner":
            cell.number_format = "@"  # phones and 工号 stay text: no 1.38E+10, no lost zeros
        letter = head.column_letter
        sheet.column_dimensions[letter].width = max(12, len(label) * 2 + 4)
    levels = DataValidation(type="list", formula1='"VIP,普通,潜在"', allow_blank=True)
    level_letter = sheet.cell(row=1, column=list(FIELDS).index("level") + 1).column_letter
    levels.add(f"{level_letter}2:{level_letter}10000")
    sheet.add_data_validation(levels)
    sheet.freeze_panes = "A2"

    notes = book.create_sheet("填写说明")
    for col, title in enumerate(("列", "是否必填", "说明"), start=1):
        notes.cell(row=1, column=col, value=title).font = bold
    for row, (key, label) in enumerate(FIELDS.items(), start=2):
        need, text = TEMPLATE_NOTES[key]
        notes.cell(row=row, column=1, value=label)
        notes.cell(row=row, column=2, value=need)
        notes.cell(row=row, column=3, value=text).alignment = Alignment(wrap_text=True)
    notes.column_dimensions["A"].width = 24
    notes.column_dimensions["B"].width = 18
    notes.column_dimensions["C"].width = 80
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def parse_mapping(text: str | None) -> dict[str, str | None] | None:
    """The upload form's `mapping` field: a JSON object {表头: 字段 or null}."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise Invalid('列映射应为 JSON 对象，如 {"联系电话": "phone"}', field="mapping") from None
    if not isinstance(data, dict) or len(data) > 100:
        raise Invalid(
            '列映射应为 JSON 对象（最多 100 列），如 {"联系电话": "phone"}', field="mapping"
        )
    for header, target in data.items():
        if not isinstance(target, str | None) or len(header) > 200:
            raise Invalid(f"列映射中「{header[:50]}」的值应为字段名或 null", field="mapping")
    return data
