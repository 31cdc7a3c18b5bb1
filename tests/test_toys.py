"""The toy energies and their exact references, checked by independent integration."""

import numpy as np
import pytest
import torch
from scipy import integrate

from openmm_bg.energies import DoubleWell, MuellerBrown
from openmm_bg.energies.toys import metropolis_samples
from openmm_bg.recipes.toy import exact_binned_profile


def test_double_well_energy_and_parameters():
    x = torch.tensor([[1.5, -0.5], [-2.0, 2.0]], dtype=torch.float64)
    expected = x[:, 0] ** 4 - 6 * x[:, 0] ** 2 + x[:, 0] + 0.5 * x[:, 1] ** 2
    assert torch.allclose(DoubleWell()(x), expected)
    shallow = x[:, 0] ** 4 - x[:, 0] ** 2 + x[:, 0] + 0.5 * x[:, 1] ** 2
    assert torch.allclose(DoubleWell.shallow()(x), shallow)
    with pytest.raises(ValueError, match="a > 0"):
        DoubleWell(a=-1.0)


@pytest.mark.parametrize("dw", [DoubleWell(), DoubleWell.shallow(), DoubleWell(a=1.0, b=6.0, c=0.5, d=2.0)])
def test_double_well_delta_f_against_2d_grid_integration(dw):
    # independent reference: brute-force 2-D Riemann sum, x2 included
    x1 = -5 + 0.0025 * (np.arange(4000) + 0.5)  # cell midpoints, none on the dividing line
    x2 = np.linspace(-8, 8, 161)
    u = dw(torch.tensor(np.stack(np.meshgrid(x1, x2, indexing="ij"), -1).reshape(-1, 2))).numpy().reshape(x1.size, x2.size)
    p = np.exp(-(u - u.min())).sum(axis=1)
    ref = -np.log(p[x1 > 0].sum() / p[x1 < 0].sum())
    assert dw.state_free_energy_difference() == pytest.approx(ref, abs=1e-5)


def test_paper_double_well_delta_f_is_the_published_figure():
    assert DoubleWell().state_free_energy_difference() == pytest.approx(3.380, abs=5e-4)


@pytest.mark.parametrize("energy", [DoubleWell(), MuellerBrown()])
def test_profiles_are_normalised_densities(energy):
    lo, hi = (-4.0, 4.0) if isinstance(energy, DoubleWell) else MuellerBrown.box[0]
    x = np.linspace(lo, hi, 8001)
    assert integrate.trapezoid(np.exp(-energy.free_energy_profile(x)), x) == pytest.approx(1.0, abs=1e-6)


def test_mueller_brown_minima_and_populations():
    mb = MuellerBrown(beta=1.0)
    minima = torch.tensor([[-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467]], dtype=torch.float64)
    assert np.allclose(mb(minima).numpy(), [-146.70, -108.17, -80.77], atol=0.01)
    mb = MuellerBrown()
    pops = mb.state_populations({"A": lambda x, y: y > 0.75, "B": lambda x, y: y <= 0.75})
    assert pops["A"] + pops["B"] == pytest.approx(1.0, abs=1e-9)
    # independent check with a finer plain Riemann sum over a larger box
    xs, ys = np.linspace(-3, 2.5, 2201), np.linspace(-2, 3.5, 2201)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    u = mb.energy_numpy(X, Y)
    p = np.exp(-(u - u.min()))
    assert pops["B"] == pytest.approx(p[Y <= 0.75].sum() / p.sum(), rel=1e-4)


def test_binned_profile_is_the_bin_average():
    dw = DoubleWell()
    edges = np.array([-2.5, -2.4, -2.3, -0.1, 0.0, 1.7, 1.8])
    density = lambda t: np.exp(-dw.free_energy_profile(np.array([t]))[0])
    ref = [-np.log(integrate.quad(density, a, b, epsabs=0, epsrel=1e-12)[0] / (b - a)) for a, b in zip(edges[:-1], edges[1:])]
    got = exact_binned_profile(dw, edges)
    narrow = np.diff(edges) <= 0.1 + 1e-12
    assert np.allclose(got[narrow], np.array(ref)[narrow], atol=1e-6)
    # a wide bin needs more sub-points
    assert np.allclose(exact_binned_profile(dw, edges, n_sub=4001), ref, atol=1e-6)


def test_metropolis_samples_stay_in_the_start_basin_and_match_its_distribution():
    dw = DoubleWell()
    x = metropolis_samples(dw, torch.tensor([-1.75, 0.0]), 4000, step=0.3, seed=1)
    assert x.shape == (4000, 2) and (x[:, 0] < 0).all()
    # within the left well, x2 is N(0, 1)
    assert abs(x[:, 1].var().item() - 1.0) < 0.15
