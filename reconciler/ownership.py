"""Ownership markers: how the tool recognises what it created.

Identities carry a tag; role assignments and service connections carry a marker at the end
of their description; federated credentials belong to their identity. Pure functions only.
"""

from __future__ import annotations

import re
from typing import Final

from reconciler.model import Ownership

OWNER_TAG: Final = "reconciler-owner"
# the inventory (README "Safety"): one tag per Azure DevOps organisation where a connection of
# the owner signs in as the identity, ``reconciler-org-{organisation id}: {organisation name}``;
# a GUID key (36 characters) and an organisation name (at most 50) fit Azure's tag limits
# (key 512, value 256) and use no character a tag name may not hold (``<>%&\?/``)
ORG_TAG_PREFIX: Final = "reconciler-org-"
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


def is_reserved_tag(key: str) -> bool:
    """True for a tag the tool writes itself: the owner tag and the inventory tags."""
    lowered = key.lower()
    return lowered == OWNER_TAG or lowered.startswith(ORG_TAG_PREFIX)


def read_tags(tags: dict[str, str] | None) -> tuple[dict[str, str], str | None]:
    """Split live tags into (the user's tags, the owner or None); the inventory tags are the
    tool's and are in neither (``read_inventory``)."""
    tags = dict(tags or {})
    owner = None
    for key in list(tags):
        if key.lower() == OWNER_TAG:
            owner = tags.pop(key)
        elif is_reserved_tag(key):
            del tags[key]
    return tags, owner


def read_inventory(tags: dict[str, str] | None) -> dict[str, str]:
    """The inventory in live tags: organisation id (lower case) -> organisation name."""
    return {
        key[len(ORG_TAG_PREFIX) :].lower(): str(value)
        for key, value in (tags or {}).items()
        if key.lower().startswith(ORG_TAG_PREFIX) and len(key) > len(ORG_TAG_PREFIX)
    }


def mark_tags(
    tags: dict[str, str] | None, owner: str, organizations: dict[str, str] | None = None
) -> dict[str, str]:
    """The tags to write: the user's, the owner tag, and one inventory tag per organisation
    (id -> name) where a connection of the owner signs in as the identity."""
    inventory = {
        f"{ORG_TAG_PREFIX}{org_id.lower()}": name for org_id, name in (organizations or {}).items()
    }
    return {**(tags or {}), OWNER_TAG: owner, **inventory}


def classify(live_owner: str | None, owner: str) -> Ownership:
    if live_owner is None:
        return Ownership.UNMARKED
    return Ownership.OWNED if live_owner == owner else Ownership.FOREIGN
