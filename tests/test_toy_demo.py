"""The double-well example and the Mueller-Brown run on a reduced budget, with the issue's tolerances.

Reduced budget: 20,000 samples instead of 100,000, 800 training iterations instead of 3,000.
The tolerance on the free-energy difference is the full one; the profile is checked bin by bin
against its own errors, whose median must stay below the 0.1 kT the full run reaches in every bin.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from helpers import NSIGMA
from openmm_bg.recipes.toy import ToyDemoSettings, run_toy_demo

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
    assert abs(report.delta_f.value - report.delta_f_exact) < NSIGMA * report.delta_f.error
    # the profile along x1, bin by bin where it is below 8 kT, against quadrature; the largest
    # deviation or error of one tail bin is left to the full run (over seeds 0-3 they reached 0.28
    # and 0.35 kT at this budget, in the code before and after the re-layout alike)
    window = report.profile_window
    deviation = np.abs(report.profile.free_energy - report.profile_exact)[window]
    assert np.all(deviation < NSIGMA * report.profile.error[window])
    assert np.median(report.profile.error[window]) < 0.1
    assert report.ess > 0.3


@pytest.mark.timeout(300)
def test_mueller_brown_reduced_budget_populations():
    report = run_toy_demo(ToyDemoSettings.reduced("mueller-brown"), progress=False)
    assert report.raw_fraction_second_state > 0.01
    # reweighted state populations against 2-D quadrature
    assert abs(report.delta_f.value - report.delta_f_exact) < 0.2
    assert abs(report.delta_f.value - report.delta_f_exact) < NSIGMA * report.delta_f.error
