"""Torsions kept as angles: the torus prior, periodic splines and a generator built on them.

The bijection contract of the layers is in tests/test_contract.py; here the densities
are checked against analytic references.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from openmm_bg.flows import CircularSplineCoupling, circular_spline, half_mask, rational_quadratic_spline, stratified_masks, wrap_turn
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.generator.prior import NormalPrior

from helpers import NSIGMA  # the shared sigma cut of the statistical tests

CIRCULAR = torch.tensor([True, False, True])


def test_torus_prior_density_is_uniform_times_normal():
    prior = NormalPrior(3, sigma=0.8, circular=CIRCULAR)
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = torch.where(CIRCULAR, wrap_turn(z), z)
    for tau in (1.0, 2.0):
        reference = torch.distributions.Normal(0.0, 0.8 * math.sqrt(tau)).log_prob(z[:, 1]) - 2 * math.log(2.0)
        assert torch.allclose(prior.log_prob(z, tau), reference, atol=1e-12)
    outside = z.clone()
    outside[3, 0] = 1.0  # the turn is half-open: 1 is -1 and lies outside [-1, 1)
    assert torch.isneginf(prior.log_prob(outside)[3]) and torch.isfinite(prior.log_prob(outside)[:3]).all()


def test_torus_prior_samples_are_uniform_on_the_circles_at_every_temperature():
    prior = NormalPrior(3, circular=CIRCULAR)
    n = 100_000
    for tau in (1.0, 4.0):
        z = prior.sample(n, tau, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        turns = z[:, CIRCULAR]
        assert ((turns >= -1) & (turns < 1)).all()
        # a uniform on [-1, 1) has mean 0 and variance 1/3; the variance of its sample variance is (1/5 - 1/9) / n
        assert (turns.mean(dim=0).abs() < NSIGMA * math.sqrt(1 / 3 / n)).all()
        assert ((turns.var(dim=0) - 1 / 3).abs() < NSIGMA * math.sqrt((1 / 5 - 1 / 9) / n)).all()
        assert abs(float(z[:, 1].var()) - tau) < NSIGMA * tau * math.sqrt(2 / n)


def test_wrap_is_a_step_on_the_torus():
    prior = NormalPrior(3, circular=CIRCULAR)
    z = torch.tensor([[0.9, 5.0, -0.95], [-1.0, -7.0, 3.5]], dtype=torch.float64)
    step = torch.tensor([[0.3, 1.0, -0.1], [-0.2, 0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[-0.8, 6.0, 0.95], [0.8, -7.0, -0.5]], dtype=torch.float64)
    assert torch.allclose(prior.wrap(z + step), expected, atol=1e-12)
    assert torch.equal(NormalPrior(3).wrap(z), z)


def test_prior_rejects_a_wrong_circular_mask():
    with pytest.raises(ValueError, match=r"boolean mask of shape \(3,\)"):
        NormalPrior(3, circular=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="boolean mask"):
        NormalPrior(3, circular=torch.tensor([1, 0, 1]))


def test_periodic_spline_is_smooth_across_the_cut():
    """Both ends of a periodic spline have the same slope and map -1 -> -1, 1 -> 1."""
    g = torch.Generator().manual_seed(2)
    # two random splines, each evaluated at both ends
    w, h, d = (torch.randn(2, 1, 6, generator=g, dtype=torch.float64).repeat_interleave(2, dim=0) for _ in range(3))
    ends = torch.tensor([[-1.0], [1.0]], dtype=torch.float64).repeat(2, 1)
    y, ladj = rational_quadratic_spline(ends, w, h, d, 1.0, periodic=True)
    assert torch.allclose(y, ends, atol=1e-12)
    left, right = ladj[0::2], ladj[1::2]
    assert torch.allclose(left, right, atol=1e-12) and (left.abs() > 1e-3).all()


def test_stratified_masks_split_each_kind_in_half():
    circular = torch.tensor([True] * 5 + [False] * 8)
    for mask in stratified_masks(circular, 4, seed=1):
        assert int((mask & circular).sum()) == 3 and int((mask & ~circular).sum()) == 4
    masks = stratified_masks(circular, 4, seed=1)
    assert len({tuple(m.tolist()) for m in masks}) > 1
    one_of_each = stratified_masks(torch.tensor([True, False]), 2)
    assert all(m.any() and not m.all() for m in one_of_each)


def test_coupling_rejects_a_circular_mask_of_the_wrong_size():
    with pytest.raises(ValueError, match="circular must be a 1-D boolean mask of 4 entries"):
        CircularSplineCoupling(half_mask(4), torch.tensor([True, False]))


def test_importance_weights_of_a_torus_generator_recover_a_von_mises_times_normal():
    """A random circular-spline generator, reweighted to ``exp(kappa cos(pi t)) N(y; 0, 1)`` on
    [-1, 1) x R: its mean weight is the partition function ``2 I0(kappa) sqrt(2 pi)`` and its weighted
    mean of cos(pi t) is ``I1(kappa) / I0(kappa)``.  Both are checked against NSIGMA bootstrap errors."""
    kappa = 2.0

    def energy(x: torch.Tensor) -> torch.Tensor:
        return -kappa * torch.cos(math.pi * x[:, 0]) + 0.5 * x[:, 1] ** 2

    torch.manual_seed(3)
    flow = circular_spline(2, torch.tensor([True, False]), n_blocks=2, hidden=(16,), n_bins=6, bound=4.0).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    generator = BoltzmannGenerator(NormalPrior(2, circular=torch.tensor([True, False])), flow, energy, event_shape=(2,))
    sample = generator.sample(40_000, generator=torch.Generator().manual_seed(4))
    assert bool(sample.in_domain.all())
    log_w = sample.log_weight.numpy()
    cos_t = np.cos(math.pi * sample.x[:, 0].numpy())

    def statistics(index: np.ndarray) -> tuple[float, float]:
        lw = log_w[index]
        w = np.exp(lw - lw.max())
        return float(np.log(w.mean()) + lw.max()), float((w * cos_t[index]).sum() / w.sum())

    value = statistics(np.arange(log_w.size))
    rng = np.random.default_rng(5)
    spread = np.std([statistics(rng.integers(0, log_w.size, log_w.size)) for _ in range(200)], axis=0)
    truth = (math.log(2 * special.i0(kappa) * math.sqrt(2 * math.pi)), special.i1(kappa) / special.i0(kappa))
    for got, sd, expected in zip(value, spread, truth):
        assert abs(got - expected) < NSIGMA * sd, (got, expected, sd)
    # the random flow is far from the target: the check has something to reweight
    assert float(np.exp(2 * np.log(np.exp(log_w - log_w.max()).sum()) - np.log(np.exp(2 * (log_w - log_w.max())).sum()))) < 0.95 * log_w.size


def test_a_periodic_flow_needs_a_prior_on_the_same_circles():
    flow = circular_spline(2, torch.tensor([True, False]), n_blocks=1, hidden=(4,))
    with pytest.raises(ValueError, match=r"circular dimensions \[0\] differ from the prior's \[\]"):
        BoltzmannGenerator(NormalPrior(2), flow, lambda x: x.sum(dim=1), event_shape=(2,))
    BoltzmannGenerator(NormalPrior(2, circular=torch.tensor([True, False])), flow, lambda x: x.sum(dim=1), event_shape=(2,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cut_open_torsions_exactly_at_the_cut_are_taken_just_inside(dtype):
    """A normalised torsion of exactly -1 (the start of the half-open turn; in float32 about one
    value in 10^7) maps to the finite value of the nearest point inside; +1 stays outside."""
    from openmm_bg.coordinates import CircularToReal

    layer = CircularToReal(torch.tensor([True, False]))
    inside = torch.nextafter(torch.tensor(-1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    u, ladj = layer.forward(torch.tensor([[-1.0, 0.3]], dtype=dtype))
    u_in, ladj_in = layer.forward(torch.stack([inside, torch.tensor(0.3, dtype=dtype)])[None])
    assert torch.isfinite(u).all() and torch.equal(u, u_in) and torch.equal(ladj, ladj_in)
    with pytest.raises(ValueError, match="outside"):
        layer.forward(torch.tensor([[1.0, 0.3]], dtype=dtype))
