"""Message templates: Django's template language over the event's payload, and nothing else.

The engine has no loaders (no {% include %} or {% extends %} of files) and no tag libraries to
{% load %}; the context is the payload, plain JSON, so a template can read values but call nothing.
A missing variable renders as empty text, as a person writing 「{{ 客户.姓名 }}」 would expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.template import Context, Engine, Library, Template, TemplateSyntaxError
from django.template.defaultfilters import register as default_filters
from django.template.defaulttags import register as default_tags

_ENGINE = Engine(loaders=[], libraries={}, autoescape=False, string_if_invalid="")
# Only the tags that shape text (if, for, with, …): no {% include %}/{% extends %} (files), no
# {% load %}, {% debug %} (the whole context) or {% url %}.
_TAGS = Library()
_TAGS.tags = {
    name: tag
    for name, tag in default_tags.tags.items()
    if name not in {"load", "debug", "url", "csrf_token", "ssi"}
}
_ENGINE.template_builtins = [_TAGS, default_filters]


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return _ENGINE.from_string(source)


def template_error(source: str) -> str | None:
    """Why `source` is not a usable template, in Chinese; None when it is."""
    try:
        _compiled(source)
    except TemplateSyntaxError as exc:
        return f"模板语法错误：{exc}"
    return None


def render(source: str, payload: Mapping[str, Any], *, html: bool = False) -> str:
    if not source:
        return ""
    return _compiled(source).render(Context(dict(payload), autoescape=html))
