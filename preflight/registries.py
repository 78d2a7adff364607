"""Registries as tables: the task table (:mod:`preflight.tasks`) and the model-family table
(:mod:`preflight.models.registry`) are dicts of rows. This module owns the two things every such
table needs: looking a row up by name, with an error that lists the known rows, and resolving a
row's ``"module:name"`` reference -- imported on use, so reading a table imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

Row = TypeVar("Row")


def lookup(table: Mapping[str, Row], name: str, what: str,
           error: type[Exception] = ValueError) -> Row:
    """The row ``name`` of ``table``; ``error`` ("unknown <what> 'x'; known: [...]") otherwise."""
    try:
        return table[name]
    except KeyError:
        raise error(f"unknown {what} {name!r}; known: {sorted(table)}") from None


def resolve(reference: str) -> Any:
    """The object a ``"module:name"`` reference names (the module is imported now)."""
    module_name, name = reference.split(":")
    return getattr(importlib.import_module(module_name), name)
