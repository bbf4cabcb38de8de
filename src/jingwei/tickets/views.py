"""The two pages a customer opens without logging in: a template's public form (/f/<token>) and a
ticket's progress page (/p/<token>) with its QR code.

Both carry their secret in the URL, so neither may leak it: `Referrer-Policy: no-referrer` (a
link followed from the page does not carry it), `noindex` (a search engine that finds the link
does not keep it), `no-store` (a shared computer's cache does not keep it). They show only what
the public JSON API shows: the form definition, and `progress_view`'s public data. The form is
sent by public_form.js to POST /api/public/forms/<token>, which validates, throttles and creates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from jingwei.core.errors import NotFound
from jingwei.org.models import Region

from . import services
from .form_fields import DEFAULT_TZ, FILES, PICKERS, REGION_DEPTH, Field
from .forms import check_definition, visible_fields
from .services.progress import ticket_by_progress_token

# What a visitor without a login can fill in. Files need an upload session and pickers search
# the tenant's catalog: both need a staff member (or a later public endpoint).
FILLABLE = (
    "text",
    "textarea",
    "number",
    "money",
    "date",
    "datetime",
    "select",
    "multiselect",
    "boolean",
    "region",
    "phone",
    "email",
)
OMITTED_NOUNS = {
    "attachment": "上传附件",
    "photo": "上传照片",
    "signature": "签名",
    "customer": "选择客户",
    "product": "选择产品",
    "part": "选择备件",
    "project": "选择项目",
}
assert set(OMITTED_NOUNS) == set(FILES + PICKERS)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _private(response: HttpResponse) -> HttpResponse:
    """Headers of a page whose URL is a secret."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "no-store"
    return response


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Content-Security-Policy"] = CSP
    return _private(response)


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    return _page(request, "tickets/not_found.html", {"message": message}, status=404)


# --- the public form -------------------------------------------------------------------------


def _field_view(f: Field, today: str, shown: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "shown": shown,
        "key": f.key,
        "kind": f.kind,
        "label": f.label,
        "help": str(f.ui.get("help") or ""),
        "placeholder": str(f.ui.get("placeholder") or ""),
        "required": f.required,
        "id": f"f-{f.key}",
        "default": f.schema.get("default"),
        "fillable": f.kind in FILLABLE,
    }
    if f.kind in ("select", "multiselect"):
        texts = f.ui.get("options") or {}
        view["options"] = [(value, str(texts.get(value) or value)) for value in f.options]
        chosen = view["default"]
        view["chosen"] = chosen if isinstance(chosen, list) else [chosen]
    if f.kind == "number":
        view["inputmode"] = "numeric" if f.integer and (f.minimum or 0) >= 0 else "decimal"
    if f.kind == "region":
        view["min_items"], view["max_items"] = f.min_items, f.max_items
    if f.kind == "date":
        view["min"] = today if f.earliest == "today" else _iso(f.earliest)
        view["max"] = today if f.latest == "today" else _iso(f.latest)
    if f.kind in OMITTED_NOUNS:
        view["notice"] = f"“{f.label}”需要{OMITTED_NOUNS[f.kind]}，本页面暂不支持"
    return view


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None and not isinstance(value, str) else ""


def _regions(tenant_id: int, depth: int) -> list[dict[str, Any]]:
    """The tenant's regions down to `depth` levels, parents before children (the cascade)."""
    rows = (
        Region.objects.filter(tenant_id=tenant_id)
        .order_by("path")
        .values_list("pk", "name", "parent_id", "path", "sort")
    )
    kept = sorted(
        (sort, name, pk, parent)
        for pk, name, parent, path, sort in rows
        if path.count("/") - 1 <= depth
    )
    return [{"id": pk, "name": name, "parent": parent} for _, name, pk, parent in kept]


@require_safe
def public_form(request: HttpRequest, token: str) -> HttpResponse:
    try:
        template = services.public_template(token)
    except NotFound:
        return _not_found(request, "表单不存在或已关闭。请向提供链接的商家确认。")
    assert template.current_version is not None
    form = check_definition(template.current_version.form)
    now = timezone.now().astimezone(DEFAULT_TZ)
    # What shows before anything is typed: the defaults decide (the script then keeps it current).
    defaults = {f.key: f.schema["default"] for f in form.fields if "default" in f.schema}
    shown = set(visible_fields(form, defaults))
    fields = [_field_view(f, now.date().isoformat(), f.key in shown) for f in form.fields]
    region_depth = max(
        (f.max_items or REGION_DEPTH for f in form.fields if f.kind == "region"), default=0
    )
    regions = _regions(template.tenant_id, region_depth) if region_depth else []
    offset = now.strftime("%z")
    context = {
        "template": template,
        "fields": fields,
        "omitted": [f for f in fields if not f["fillable"] and not f["required"]],
        "definition": form.data,
        "regions": regions,
        "top_regions": [r for r in regions if r["parent"] is None],
        "config": {
            "submit_url": reverse("api:submit_public_form", kwargs={"token": token}),
            "qr_url": reverse("tickets:progress_qr_svg", kwargs={"token": "TOKEN"}),
            "time_zone": str(DEFAULT_TZ.key),
            "offset": f"{offset[:3]}:{offset[3:]}",
        },
    }
    return _page(request, "tickets/public_form.html", context)


# --- the progress page -----------------------------------------------------------------------


STATE_LABELS = {"done": "已完成", "current": "处理中", "next": "下一步", "todo": "待处理"}


@require_safe
def progress(request: HttpRequest, token: str) -> HttpResponse:
    try:
        view = services.progress_view(token)
    except NotFound:
        return _not_found(request, "进度页不存在。请检查链接是否完整。")
    steps = [{**step, "label": STATE_LABELS.get(step["state"], "")} for step in view["steps"]]
    timeline: list[dict[str, Any]] = [
        {"at": e["at"], "kind": "event", "title": e["title"]} for e in view["events"]
    ] + [
        {"at": c["at"], "kind": "comment", "author": c["author"], "body": c["body"]}
        for c in view["comments"]
    ]
    timeline.sort(key=lambda item: _sort_key(item["at"]))
    return _page(
        request,
        "tickets/progress.html",
        {
            "view": view,
            "steps": steps,
            "timeline": timeline,
            "token": token,
        },
    )


def _sort_key(at: datetime | None) -> datetime:
    return at if at is not None else timezone.now()


@require_safe
def progress_qr(request: HttpRequest, token: str, fmt: str) -> HttpResponse:
    """The QR code of a progress page, pointing at its public address."""
    try:
        ticket = ticket_by_progress_token(token)
    except NotFound:
        return _private(HttpResponse("进度页不存在", status=404, content_type="text/plain"))
    url = services.progress_url(ticket)
    if fmt == "png":
        response = HttpResponse(services.qr_png(url), content_type="image/png")
    else:
        response = HttpResponse(services.qr_svg(url), content_type="image/svg+xml")
    return _private(response)
