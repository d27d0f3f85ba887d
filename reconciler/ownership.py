"""Ownership markers: how the tool recognises what it created.

Identities carry a tag; role assignments and service connections carry a marker at the end
of their description; federated credentials belong to their identity. Pure functions only.
"""

from __future__ import annotations

import re
from typing import Final

from reconciler.model import Ownership

OWNER_TAG: Final = "reconciler-owner"
_MARKER_RE: Final = re.compile(r"\s*\[reconciler-owner: ([^\]\s]+)\]\s*$")


def mark_description(description: str | None, owner: str) -> str:
    """The description to write: the user's text followed by the owner marker."""
    text = (description or "").rstrip()
    marker = f"[reconciler-owner: {owner}]"
    return f"{text} {marker}" if text else marker


def read_description(text: str | None) -> tuple[str | None, str | None]:
    """Split a live description into (the user's text or None, the owner or None)."""
    if not text:
        return None, None
    match = _MARKER_RE.search(text)
    if match is None:
        return text, None
    rest = text[: match.start()].rstrip()
    return (rest or None), match.group(1)


def read_tags(tags: dict[str, str] | None) -> tuple[dict[str, str], str | None]:
    """Split live tags into (the user's tags, the owner or None)."""
    tags = dict(tags or {})
    owner = None
    for key in list(tags):
        if key.lower() == OWNER_TAG:
            owner = tags.pop(key)
    return tags, owner


def mark_tags(tags: dict[str, str] | None, owner: str) -> dict[str, str]:
    return {**(tags or {}), OWNER_TAG: owner}


def classify(live_owner: str | None, owner: str) -> Ownership:
    if live_owner is None:
        return Ownership.UNMARKED
    return Ownership.OWNED if live_owner == owner else Ownership.FOREIGN
