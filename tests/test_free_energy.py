"""Free-energy estimators against analytic answers and against pymbar."""

import math

import numpy as np
import pytest
import torch
from pymbar import other_estimators
from pymbar.testsystems.harmonic_oscillators import HarmonicOscillatorsTestCase

from helpers import gaussian_generator, gaussian_log_partition
from openmm_bg.analysis import free_energy as fe
from openmm_bg.generator.prior import NormalPrior
from openmm_bg.energies import DoubleWell
from openmm_bg.flows import Scaling
from openmm_bg.generator.model import BoltzmannGenerator

from helpers import NSIGMA  # the shared sigma cut of the statistical tests


def oscillator_works(n=4000, seed=0):
    """Two harmonic oscillators (O=0, K=1) and (O=0.5, K=2); works in both directions."""
    case = HarmonicOscillatorsTestCase(O_k=[0.0, 0.5], K_k=[1.0, 2.0])
    x_n, u_kn, N_k, _ = case.sample(N_k=[n, n], mode="u_kn", seed=seed)
    w_f = u_kn[1, :n] - u_kn[0, :n]
    w_r = u_kn[0, n:] - u_kn[1, n:]
    exact = case.analytical_free_energies()
    return w_f, w_r, u_kn, N_k, exact[1] - exact[0]


def test_fep_matches_pymbar_exp_and_the_analytic_answer():
    w_f, _, _, _, exact = oscillator_works()
    est = fe.fep(w_f, n_bootstrap=300, seed=1)
    ref = other_estimators.exp(w_f)
    assert est.value == pytest.approx(ref["Delta_f"], abs=1e-10)
    assert est.error == pytest.approx(ref["dDelta_f"], rel=0.3)
    assert abs(est.value - exact) < NSIGMA * est.error


def test_bar_matches_pymbar_and_the_analytic_answer():
    w_f, w_r, _, _, exact = oscillator_works()
    est = fe.bar(w_f, w_r, n_bootstrap=300, seed=2)
    ref = other_estimators.bar(w_f, w_r)
    assert est.value == pytest.approx(ref["Delta_f"], abs=1e-7)
    assert est.error == pytest.approx(ref["dDelta_f"], rel=0.3)
    assert abs(est.value - exact) < NSIGMA * est.error
    # unequal sample sizes
    est = fe.bar(w_f[:1000], w_r, n_bootstrap=0)
    assert est.value == pytest.approx(other_estimators.bar(w_f[:1000], w_r)["Delta_f"], abs=1e-7)


def test_bar_with_a_state_restricted_by_an_indicator():
    # State 1 is state 0 restricted to x > 0: F_1 - F_0 = -log P(x > 0).
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=5000)
    w_f = np.where(x0 > 0, 0.0, np.inf)
    w_r = np.zeros(3000)
    est = fe.bar(w_f, w_r, n_bootstrap=200, seed=4)
    assert est.value == pytest.approx(-math.log(np.mean(x0 > 0)), abs=1e-9)
    assert abs(est.value - math.log(2)) < NSIGMA * est.error


def test_mbar_two_states_equals_bar_and_three_states_match_analytic():
    w_f, w_r, u_kn, N_k, exact = oscillator_works()
    two = fe.mbar(u_kn, N_k)
    assert isinstance(two, fe.StateFreeEnergies) and two.value.shape == two.error.shape == (2,)
    assert two.value[0] == 0.0 and two.difference(0) == fe.Estimate(0.0, 0.0)
    bar_estimate = fe.bar(w_f, w_r, n_bootstrap=0)
    assert two.difference(1).value == pytest.approx(bar_estimate.value, abs=1e-6)
    case = HarmonicOscillatorsTestCase(O_k=[0.0, 0.3, 0.8], K_k=[1.0, 3.0, 0.5])
    _, u_kn, N_k, _ = case.sample(N_k=[3000, 3000, 3000], mode="u_kn", seed=5)
    three = fe.mbar(u_kn, N_k, n_bootstrap=50, seed=6)
    analytic = case.analytical_free_energies() - case.analytical_free_energies()[0]
    assert np.all(np.abs(three.value - analytic)[1:] < NSIGMA * three.error[1:])
    with pytest.raises(ValueError, match="u_kn must have shape"):
        fe.mbar(u_kn[:, :10], N_k)
    with pytest.raises(ValueError, match="n_bootstrap must be an integer >= 0"):
        fe.mbar(u_kn, N_k, n_bootstrap=2.5)


def double_well_samples(state, n, seed):
    """Exact samples of the double well restricted to x1 < 0 or x1 > 0 (inverse CDF in x1)."""
    dw = DoubleWell()
    grid = np.linspace(-3.5, 0, 100_001) if state == "A" else np.linspace(0, 3.5, 100_001)
    cdf = np.cumsum(np.exp(-dw.free_energy_profile(grid)))
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    x1 = np.interp(rng.random(n), cdf, grid)
    return torch.tensor(np.stack([x1, rng.normal(size=n)], axis=1))


def wide_gaussian_generator(sigma=1.8):
    flow = Scaling(2).double()
    with torch.no_grad():
        flow.s.fill_(1.0)
    return BoltzmannGenerator(NormalPrior(2, sigma), flow, DoubleWell())


def test_bar_through_latent_state_on_the_double_well():
    dw, gen = DoubleWell(), wide_gaussian_generator()
    s = gen.sample(20_000, generator=torch.Generator().manual_seed(7))
    u_z = -gen.prior.log_prob(s.z)
    ladj_xz = s.log_prob - gen.prior.log_prob(s.z)  # log p_X = log q(z) + log|dz/dx|
    x1 = s.x[:, 0]
    z_to_a = fe.latent_works(torch.where(x1 < 0, s.energy, torch.inf), u_z, ladj_xz)
    z_to_b = fe.latent_works(torch.where(x1 > 0, s.energy, torch.inf), u_z, ladj_xz)

    def reverse(x):
        z, ladj = gen.flow.forward(x)
        return -fe.latent_works(dw(x), -gen.prior.log_prob(z), ladj)

    a_to_z = reverse(double_well_samples("A", 5000, 8))
    b_to_z = reverse(double_well_samples("B", 5000, 9))
    est = fe.bar_through_latent(z_to_a, a_to_z, z_to_b, b_to_z, n_bootstrap=100, seed=10)
    assert est.error < 0.1
    assert abs(est.value - dw.state_free_energy_difference()) < NSIGMA * est.error


def test_macrostate_free_energy_needs_only_the_prior_normalisation():
    exact_gen = gaussian_generator()
    s = exact_gen.sample(2000, generator=torch.Generator().manual_seed(0))
    est = fe.macrostate_free_energy(s.log_weight, n_bootstrap=50)
    assert est.value == pytest.approx(-gaussian_log_partition(), abs=1e-10) and est.error < 1e-10

    dw, gen = DoubleWell(), wide_gaussian_generator()
    s = gen.sample(200_000, generator=torch.Generator().manual_seed(11))
    est = fe.macrostate_free_energy(s.log_weight, s.x[:, 0] > 0, n_bootstrap=100, seed=12)
    # -log of int_{x1>0} exp(-u1) dx1 times the Gaussian x2 integral sqrt(2 pi / d)
    exact = -(dw.log_partition_x1(0.0, np.inf) + 0.5 * math.log(2 * math.pi))
    assert abs(est.value - exact) < NSIGMA * est.error


def test_kl_bound_lies_above_the_free_energy():
    gen = wide_gaussian_generator()
    s = gen.sample(50_000, generator=torch.Generator().manual_seed(13))
    bound = fe.kl_bound(s.energy, s.log_prob, n_bootstrap=50)
    exact = -(DoubleWell().log_partition_x1() + 0.5 * math.log(2 * math.pi))
    assert bound.value - exact > NSIGMA * bound.error
    s = gaussian_generator().sample(100, generator=torch.Generator().manual_seed(0))
    assert fe.kl_bound(s.energy, s.log_prob, n_bootstrap=0).value == pytest.approx(-gaussian_log_partition(), abs=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        fe.fep([0.0, float("nan")])
    with pytest.raises(ValueError, match="every work is"):
        fe.fep([np.inf, np.inf])
    with pytest.raises(ValueError, match="do not overlap"):
        fe.bar([np.inf, np.inf], [0.0])
    with pytest.raises(ValueError, match="same generator samples"):
        fe.bar_through_latent([0.0, 1.0], [0.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="no generator sample"):
        fe.macrostate_free_energy([0.0, 1.0], [False, False])
