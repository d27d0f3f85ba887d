"""Views of the plan document: text for terminals and logs, JSON, Markdown for PR comments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from reconciler.render.document import dumps
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text

FORMATS: Final = ("text", "json", "markdown")


def render(document: Mapping[str, Any], fmt: str, *, color: bool = False) -> str:
    """Render a plan document (``to_document``) as ``text``, ``json`` or ``markdown``."""
    if fmt == "text":
        return render_text(document, color=color)
    if fmt == "json":
        return dumps(document)
    if fmt == "markdown":
        return render_markdown(document)
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "render", "render_markdown", "render_text"]
