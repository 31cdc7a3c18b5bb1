"""The double-well example and the Mueller-Brown run on a reduced budget, with the issue's tolerances.

Reduced budget: 20,000 samples instead of 100,000, 800 training iterations instead of 3,000.
The tolerances on the free energies are the full ones; the standard error of the profile is
allowed to be sqrt(5) larger than the 0.1 kT of the full run, since it scales as 1/sqrt(samples).
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from openmm_bg.toy_demo import ToyDemoSettings, run_toy_demo

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("double_well_example", ROOT / "examples" / "double_well.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
def test_double_well_example_reduced_budget(tmp_path, capsys):
    report = load_example().main(["--quick", "--no-progress", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Kish ESS" in out and (tmp_path / "double-well.png").stat().st_size > 10_000
    # it found the second well although the data hold none of it
    assert report.raw_fraction_second_state > 0.01
    assert abs(report.delta_f.value - report.delta_f_exact) < 0.1
    assert abs(report.delta_f.value - report.delta_f_exact) < 4 * report.delta_f.error
    assert report.max_profile_deviation < 0.2
    assert report.max_profile_error < 0.1 * math.sqrt(5)
    assert report.ess > 0.3


@pytest.mark.timeout(300)
def test_mueller_brown_reduced_budget_populations():
    report = run_toy_demo(ToyDemoSettings.reduced("mueller-brown"), progress=False)
    assert report.raw_fraction_second_state > 0.01
    # reweighted state populations against 2-D quadrature
    assert abs(report.delta_f.value - report.delta_f_exact) < 0.2
    assert abs(report.delta_f.value - report.delta_f_exact) < 4 * report.delta_f.error
