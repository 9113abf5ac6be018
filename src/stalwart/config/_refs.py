"""Objects named by ``package.module:attribute`` references (apps, tools, scenarios).

Every loader of a user's reference goes through here, so a bad one always fails the
same way: a :class:`~stalwart.errors.ConfigError` naming the reference and what is
wrong with it (its shape, the import, the attribute, or the object's type).
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from stalwart.errors import ConfigError

__all__ = ["load_instance", "load_ref"]

T = TypeVar("T")


def load_ref(ref: str, what: str) -> Any:
    """The attribute ``ref`` names; ``what`` says what it is for, in errors."""
    module_name, _, attr = str(ref).partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {ref!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {what} module {module_name!r}: {exc}") from exc
    obj: Any = getattr(module, attr, None)  # one name: attribute paths are not references
    if obj is None:
        raise ConfigError(f"{what} module {module_name!r} has no attribute {attr!r}")
    return obj


def load_instance(ref: str, cls: type[T], what: str) -> T:
    """The ``cls`` instance ``ref`` names, or that calling what it names returns."""
    obj = load_ref(ref, what)
    if callable(obj) and not isinstance(obj, cls):
        obj = obj()
    if not isinstance(obj, cls):
        raise ConfigError(f"{ref!r} is a {type(obj).__name__}, not a {cls.__name__}")
    return obj
