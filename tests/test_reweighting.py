import math

import numpy as np
import pytest
import torch

from openmm_bg.analysis import reweighting as rw
from openmm_bg.energies import DoubleWell

from helpers import NSIGMA  # the shared sigma cut of the statistical tests


def test_kish_ess_against_direct_formula():
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=1000) * 0.7 + 40.0  # offset: must be invariant
    w = np.exp(log_w - 40.0)
    assert rw.kish_ess(log_w) == pytest.approx(w.sum() ** 2 / (w.size * (w * w).sum()), rel=1e-12)
    assert rw.kish_ess(np.zeros(10)) == pytest.approx(1.0)
    assert rw.kish_ess(np.array([0.0] * 5 + [-np.inf] * 5)) == pytest.approx(0.5)
    # log-normal weights: ESS fraction -> exp(-s^2) for large n
    log_w = rng.normal(size=400_000) * 0.5
    assert rw.kish_ess(log_w) == pytest.approx(math.exp(-0.25), abs=0.01)


def test_weighted_mean_recovers_shifted_gaussian():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1_000_000)
    log_w = -0.5 * (x - 0.5) ** 2 + 0.5 * x**2
    ess = rw.kish_ess(log_w) * x.size
    assert abs(rw.weighted_mean(x, log_w) - 0.5) < NSIGMA / math.sqrt(ess)


def test_log_importance_weights_and_failed_energies():
    lw = rw.log_importance_weights(torch.tensor([1.0, float("inf")]), np.array([-0.5, 0.3]))
    assert lw[0] == pytest.approx(-0.5) and np.isneginf(lw[1])
    with pytest.raises(ValueError, match="NaN"):
        rw.log_importance_weights([float("nan")], [0.0])


def test_state_free_energy_difference_of_plain_counts():
    rng = np.random.default_rng(2)
    n, p_b = 20_000, 0.1
    in_b = rng.random(n) < p_b
    est = rw.state_free_energy_difference(~in_b, in_b, np.zeros(n), n_bootstrap=500, seed=3)
    assert est.value == pytest.approx(-math.log(in_b.sum() / (~in_b).sum()), abs=1e-12)
    # delta method for a binomial log-ratio: var = 1 / (n p (1 - p))
    expected_error = 1.0 / math.sqrt(n * p_b * (1 - p_b))
    assert est.error == pytest.approx(expected_error, rel=0.15)
    assert abs(est.value - math.log((1 - p_b) / p_b)) < NSIGMA * expected_error


def test_free_energy_profile_of_exact_double_well_samples():
    dw = DoubleWell()
    # exact samples of x1 by inverse CDF on a fine grid
    grid = np.linspace(-3.5, 3.5, 200_001)
    p = np.exp(-dw.free_energy_profile(grid))
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    x1 = np.interp(np.random.default_rng(4).random(200_000), cdf, grid)
    prof = rw.free_energy_profile(x1, np.zeros_like(x1), bins=np.linspace(-2.4, -1.0, 15), n_bootstrap=100, seed=5)
    exact = dw.free_energy_profile(prof.bin_centers)
    # bin averages of a curved profile differ from its centre values by O(width^2 f''/24); bins are 0.1 wide
    z = np.abs(prof.free_energy - exact) / prof.error
    assert np.all(z < NSIGMA), z
    # bootstrap error of -log(count) is the binomial one, sqrt((1 - p) / (n p))
    frac = prof.counts / x1.size
    assert np.allclose(prof.error, np.sqrt((1 - frac) / prof.counts), rtol=0.25)
    assert prof.counts.sum() == np.sum((x1 >= -2.4) & (x1 <= -1.0))


def test_reweighting_corrects_a_wrong_sampler():
    # Draw from N(0, 1), reweight to N(1, 0.8^2); compare profile with the exact density.
    rng = np.random.default_rng(6)
    x = rng.normal(size=400_000)
    log_w = -0.5 * ((x - 1) / 0.8) ** 2 + 0.5 * x**2
    prof = rw.free_energy_profile(x, log_w, bins=np.linspace(0.0, 2.0, 11), n_bootstrap=50, seed=7)
    exact = 0.5 * ((prof.bin_centers - 1) / 0.8) ** 2 + math.log(0.8 * math.sqrt(2 * math.pi))
    assert np.all(np.abs(prof.free_energy - exact) < NSIGMA * prof.error + 0.01)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        rw.kish_ess(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="every log weight is -inf"):
        rw.kish_ess(np.array([-np.inf, -np.inf]))
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        rw.kish_ess(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="state B holds no sample"):
        rw.state_free_energy_difference(np.ones(3, bool), np.zeros(3, bool), np.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        rw.free_energy_profile(np.zeros(3), np.zeros(4))
