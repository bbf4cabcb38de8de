"""Customer import API (客户导入): upload a file as a background job, follow its progress, download
the row-level error report and the Excel template. Thin: parse, call the import service,
serialise. Values of identity columns in error reports are masked without customer.view_pii."""

from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.db.models import QuerySet
from django.http import HttpResponse
from ninja import Field, File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from jingwei.core.api import AuthedRequest, Page

from ..models import ImportJob
from ..services import importing

router = Router(tags=["客户导入"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ImportJobOut(Schema):
    id: int
    file_name: str
    status: str = Field(
        ..., description="pending 排队中 / validating 校验中 / writing 写入中 / done / failed"
    )
    status_label: str = Field(..., alias="get_status_display")
    percent: int = Field(..., description="整体进度 0—100（校验占前 20%，写入占其余）")
    skip_invalid: bool = Field(
        ..., description="true：跳过错误行，其余照常导入；false：有错误则全部不导入"
    )
    total_rows: int = Field(..., description="数据行数（不含表头与空行）")
    processed_rows: int = Field(..., description="当前阶段已处理的行数")
    created_count: int = Field(..., description="新建的客户数")
    updated_count: int = Field(..., description="合入已有客户的行数")
    skipped_count: int = Field(..., description="因错误跳过的行数")
    message: str
    created_by_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @staticmethod
    def resolve_percent(obj: ImportJob) -> int:
        return importing.import_percent(obj)


class ImportErrorOut(Schema):
    row: int = Field(..., description="行号（与 Excel 中显示的一致）")
    column: str = Field(..., description="列（文件中的表头）")
    value: str = Field(..., description="单元格内容；身份列在没有 customer.view_pii 权限时打码")
    reason: str


class ImportJobDetailOut(ImportJobOut):
    mapping: dict[str, str | None] = Field(..., description="上传时指定的列映射")
    error_count: int
    errors: list[ImportErrorOut] = Field(
        ..., description=f"前 {importing.FIRST_ERRORS} 条错误；完整报告见 errors.csv"
    )

    @staticmethod
    def resolve_error_count(obj: ImportJob) -> int:
        return len(obj.errors)

    @staticmethod
    def resolve_errors(obj: ImportJob, context: Any) -> list[dict[str, Any]]:
        request = (context or {}).get("request")
        return importing.import_errors_shown(
            request.actor if request is not None else None, obj, importing.FIRST_ERRORS
        )


@router.post(
    "/customers/imports",
    response={202: ImportJobOut},
    summary="上传客户文件（.xlsx / .csv），后台导入",
    description=(
        "multipart/form-data：file 为文件；mapping 可选，JSON 对象 {表头: 字段}（字段为 name、phone 等"
        "或其中文名，null 表示忽略该列）；skip_invalid 为 true 时跳过错误行。文件无法读取或缺少必需列时"
        "立即返回 422，不保存任何内容。"
    ),
)
def upload_import(
    request: AuthedRequest,
    file: File[UploadedFile],
    mapping: str | None = Form(None, max_length=20_000),
    skip_invalid: bool = Form(False),
) -> Status[ImportJob]:
    job = importing.import_job_create(
        actor=request.actor,
        file_name=file.name or "",
        content=file.read(),
        mapping=importing.parse_mapping(mapping),
        skip_invalid=skip_invalid,
    )
    return Status(202, job)


@router.get("/customers/imports", response=list[ImportJobOut], summary="导入任务（最新的在前）")
@paginate(Page)
def list_imports(request: AuthedRequest) -> QuerySet[ImportJob]:
    return importing.import_job_list(request.actor)


# A literal path before "/customers/imports/{job_id}", which would otherwise take it for an id.
@router.get("/customers/imports/template.xlsx", summary="下载客户导入模板（Excel）")
def import_template(request: AuthedRequest) -> HttpResponse:
    response = HttpResponse(importing.import_template_xlsx(actor=request.actor), content_type=XLSX)
    response["Content-Disposition"] = (
        'attachment; filename="customer-import-template.xlsx"; '
        f"filename*=UTF-8''{quote('客户导入模板.xlsx')}"
    )
    return response


@router.get(
    "/customers/imports/{job_id}",
    response=ImportJobDetailOut,
    summary="导入任务：状态、进度、计数与前几条错误",
)
def get_import(request: AuthedRequest, job_id: int) -> ImportJob:
    return importing.import_job_get(request.actor, job_id)


@router.get(
    "/customers/imports/{job_id}/errors.csv",
    summary="完整错误报告（CSV：行号、列、值、原因）",
)
def import_errors(request: AuthedRequest, job_id: int) -> HttpResponse:
    body = importing.import_errors_csv(actor=request.actor, job_id=job_id)
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job_id}-errors.csv"'
    return response
