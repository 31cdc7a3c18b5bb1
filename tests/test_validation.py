"""The shared input checks of openmm_bg._validation."""

import math

import numpy as np
import pytest

from openmm_bg._validation import ensure_count, ensure_positive


def test_ensure_count_accepts_integers_and_rejects_the_rest():
    assert ensure_count(3, "n") == 3 and type(ensure_count(np.int64(3), "n")) is int
    assert ensure_count(0, "n_workers", minimum=0) == 0
    for bad in (0, -1, 2.0, True, np.bool_(True), "3", None):
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got"):
            ensure_count(bad, "n")


def test_ensure_positive_accepts_finite_positive_reals():
    assert ensure_positive(2, "timeout") == 2.0 and type(ensure_positive(np.float32(0.5), "timeout")) is float
    for bad in (0, -1.0, math.inf, math.nan, True, "1", None):
        with pytest.raises(ValueError, match=r"^mass must be a finite positive number of amu, got"):
            ensure_positive(bad, "mass", "amu")
    with pytest.raises(ValueError, match=r"^timeout must be a finite positive number, got 0"):
        ensure_positive(0, "timeout")
