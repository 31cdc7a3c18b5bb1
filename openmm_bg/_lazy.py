"""Names a package loads on first use (PEP 562), so that importing the package stays cheap."""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (relative to it) on first access.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict
        Attribute name -> submodule that defines it, relative to ``package`` (e.g. ``"generator.model"``).
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f".{names[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
