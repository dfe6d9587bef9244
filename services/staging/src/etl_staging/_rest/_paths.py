"""Dotted paths into JSON documents: ``data.items``, ``meta.next``, ``results.0.id``."""

from __future__ import annotations

from typing import Any

MISSING: Any = object()


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` (a digit step indexes a list), or :data:`MISSING`; '' is the document."""
    value = document
    for step in path.split(".") if path else []:
        if isinstance(value, dict):
            if step not in value:
                return MISSING
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def assign(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with ``value`` at ``path``, creating intermediate objects."""
    steps = path.split(".")
    root = dict(document)
    node = root
    for step in steps[:-1]:
        child = node.get(step)
        node[step] = dict(child) if isinstance(child, dict) else {}
        node = node[step]
    node[steps[-1]] = value
    return root
