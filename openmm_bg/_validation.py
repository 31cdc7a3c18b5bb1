"""Checks of input values at the public edge, each raising one clear error (mdtraj's ``ensure_type`` style)."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["ensure_count", "ensure_positive"]


def ensure_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int, or a ``ValueError`` naming ``name``.

    Accepts Python and numpy integers (not ``bool``) that are at least ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def ensure_positive(value, name: str, unit: str = "") -> float:
    """``value`` as a Python float, or a ``ValueError`` naming ``name``.

    Accepts Python and numpy real numbers (not ``bool``) that are finite and > 0.

    Parameters
    ----------
    value : object
    name : str
        The argument's name, for the message.
    unit : str
        Unit named in the message, e.g. ``"amu"`` or ``"s"``; empty for none.

    Returns
    -------
    float
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        of_unit = f" of {unit}" if unit else ""
        raise ValueError(f"{name} must be a finite positive number{of_unit}, got {value!r}")
    return float(value)
