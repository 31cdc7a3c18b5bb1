import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde

from helpers import gaussian_generator, gaussian_log_partition
from openmm_bg.training.losses import kl_loss, linlog_cut, ml_loss, rc_loss

from helpers import NSIGMA  # the shared sigma cut of the statistical tests


def test_linlog_cut_is_identity_below_and_smooth_at_the_cut():
    u = torch.tensor([-5.0, 0.0, 9.999, 10.0, 10.001, 1e3, 1e12, float("inf")], dtype=torch.float64, requires_grad=True)
    v = linlog_cut(u, 10.0)
    assert torch.equal(v[:3], u[:3].detach())
    assert abs(v[4].item() - (10.0 + math.log1p(0.001))) < 1e-15
    assert v[6].item() == pytest.approx(10.0 + math.log1p(1e12 - 10.0))
    assert torch.isposinf(v[7])
    v[:7].sum().backward()
    assert torch.isfinite(u.grad).all()
    assert u.grad[2].item() == 1.0 and u.grad[4].item() == pytest.approx(1.0, abs=2e-3)
    assert linlog_cut(u, None) is u


def test_kl_loss_of_exact_generator_equals_minus_log_partition():
    # E[u + log p_X] = KL(p_X || mu) - log Z, and the KL vanishes for the exact generator.
    for tau in (1.0, 2.0):
        term = kl_loss(gaussian_generator(), 500, tau, rng=torch.Generator().manual_seed(0))
        assert term.n_nonfinite == 0
        assert term.loss.item() == pytest.approx(-gaussian_log_partition(temperature=tau), abs=1e-10)


def test_kl_loss_bounds_the_free_energy_from_above():
    f_exact = -gaussian_log_partition()
    for flow_std in (1.0, 3.0):
        term = kl_loss(gaussian_generator(flow_std=flow_std), 20_000, rng=torch.Generator().manual_seed(1))
        # analytic KL between N(0, s^2 I) and N(0, 4 I) in 3 dimensions
        kl = 1.5 * (flow_std**2 / 4 - 1 - math.log(flow_std**2 / 4))
        assert term.loss.item() > f_exact
        assert term.loss.item() == pytest.approx(f_exact + kl, abs=0.05)


def test_ml_loss_of_exact_generator_is_the_target_entropy():
    gen = gaussian_generator()
    x = 2.0 * torch.randn(100_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # differential entropy of N(0, 4 I) in 3-D; per-sample NLL has variance 3/2
    entropy = 1.5 * (1 + math.log(2 * math.pi * 4))
    assert abs(ml_loss(gen, x).item() - entropy) < NSIGMA * math.sqrt(1.5 / x.shape[0])


def test_rc_loss_matches_scipy_kde_and_spreads_samples():
    r = torch.randn(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.stack([r, torch.zeros_like(r)], dim=1).requires_grad_()
    h = 0.2
    loss = rc_loss(x, lambda x: x[:, 0], bandwidth=h)
    kde = gaussian_kde(r.numpy(), bw_method=h / r.numpy().std(ddof=1))
    assert loss.item() == pytest.approx(np.log(kde(r.numpy())).mean(), abs=1e-10)
    loss.backward()
    # Minimising -entropy pushes the outermost samples outwards.
    order = torch.argsort(r)
    assert x.grad[order[0], 0] > 0 and x.grad[order[-1], 0] < 0
    with pytest.raises(ValueError, match="bandwidth"):
        rc_loss(x, lambda x: x[:, 0], bandwidth=0.0)


def test_kl_loss_reports_and_optionally_drops_nonfinite_energies():
    gen = gaussian_generator()
    base = gen.target.fn
    gen.target.fn = lambda x: torch.where(x[:, 0] > 2.0, torch.full_like(x[:, 0], float("inf")), base(x))
    term = kl_loss(gen, 400, rng=torch.Generator().manual_seed(0))
    assert term.n_nonfinite > 0 and not torch.isfinite(term.loss)
    dropped = kl_loss(gen, 400, rng=torch.Generator().manual_seed(0), drop_nonfinite=True)
    assert dropped.n_nonfinite == term.n_nonfinite
    assert dropped.x.shape[0] == 400 - term.n_nonfinite and torch.isfinite(dropped.loss)
    dropped.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in gen.parameters())
