import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde

from helpers import gaussian_generator, gaussian_log_partition
from openmm_bg.training.losses import kl_loss, linlog_cut, mcmc_loss, ml_loss, rc_loss

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


def test_mcmc_loss_of_exact_generator_is_barker_at_even_odds_less_the_jump():
    """For the exact generator every independence move is accepted (D = 0): the loss is
    2 log 2 - mean log |x' - x|^2, with x' the same prior draws made independently here."""
    generator = gaussian_generator()
    x = 2.0 * torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    term = mcmc_loss(generator, x, "independence", rng=torch.Generator().manual_seed(4))
    x_new = generator.propose(64, generator=torch.Generator().manual_seed(4))[0]
    expected = 2 * math.log(2.0) - torch.log((x_new - x).square().sum(dim=1)).mean()
    assert term.acceptance == pytest.approx(1.0, abs=1e-12) and term.n_nonfinite == 0 and term.n_energies == 128
    # the independence move's default is acceptance alone
    assert term.loss.item() == pytest.approx(2 * math.log(2.0), abs=1e-12)
    with_jump = mcmc_loss(generator, x, "independence", distance_weight=1.0, rng=torch.Generator().manual_seed(4))
    assert with_jump.loss.item() == pytest.approx(expected.item(), abs=1e-10)


def test_mcmc_loss_latent_ratio_is_the_latent_metropolis_one():
    """Latent kind on the exact Gaussian generator: D = -u(x') + u(x) (the Jacobian is constant),
    computed here from the same latent step."""
    generator = gaussian_generator(target_std=2.0)
    x = 2.0 * torch.randn(32, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    term = mcmc_loss(generator, x, "latent", step_size=0.3, distance_weight=0.0, rng=torch.Generator().manual_seed(6))
    step = 0.3 * torch.randn(32, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x_new = x + 2.0 * step
    d = -(x_new.square().sum(dim=1) - x.square().sum(dim=1)) / 8.0
    default = mcmc_loss(generator, x, "latent", step_size=0.3, rng=torch.Generator().manual_seed(6))
    jump = torch.log((x_new - x).square().sum(dim=1))
    assert default.loss.item() == pytest.approx((2 * torch.logaddexp(d / 2, -d / 2) - jump).mean().item(), abs=1e-10)
    assert term.loss.item() == pytest.approx((2 * torch.logaddexp(d / 2, -d / 2)).mean().item(), abs=1e-10)
    assert term.acceptance == pytest.approx(torch.exp(d.clamp(max=0)).mean().item(), abs=1e-12)


def test_mcmc_loss_rejects_bad_settings():
    generator = gaussian_generator()
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="kind must be one of"):
        mcmc_loss(generator, x, "gibbs")
    with pytest.raises(ValueError, match="step_size must be positive"):
        mcmc_loss(generator, x, "latent", step_size=0.0)


def test_training_for_moves_raises_the_acceptance_of_the_independence_move():
    """A RealNVP generator for an anisotropic, shifted Gaussian, trained by the MCMC loss alone.
    Its independence-move acceptance, measured on 20,000 fresh pairs (exact target samples and
    generator proposals, E[min(1, w'/w)]), must rise by more than NSIGMA standard errors."""
    from openmm_bg.flows import real_nvp
    from openmm_bg.generator.model import BoltzmannGenerator
    from openmm_bg.generator.prior import NormalPrior
    from openmm_bg.training.trainer import Trainer, TrainingConfig

    mean, std = torch.tensor([1.5, -1.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    energy = lambda x: 0.5 * (((x - mean) / std) ** 2).sum(dim=1)  # noqa: E731
    torch.manual_seed(0)
    generator = BoltzmannGenerator(NormalPrior(2), real_nvp(2, n_blocks=2, hidden=(32,)), energy, event_shape=(2,)).double()
    exact = lambda n, seed: mean + std * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)  # noqa: E731

    def acceptance(seed: int) -> tuple[float, float]:
        x = exact(20_000, seed)
        with torch.no_grad():
            log_w = -energy(x) - generator.log_prob(x)
            proposal = generator.sample(20_000, generator=torch.Generator().manual_seed(seed + 1))
        a = torch.exp(torch.clamp(proposal.log_weight - log_w, max=0.0))
        return float(a.mean()), float(a.std() / math.sqrt(a.numel()))

    before, se_before = acceptance(10)
    config = TrainingConfig(n_iterations=300, w_ml=0.0, w_mcmc=1.0, kl_batch_size=256, learning_rate=5e-3, seed=1)
    trainer = Trainer(generator, config, data=exact(5000, 2))
    trainer.train(progress=False)
    after, se_after = acceptance(20)
    assert after > before + NSIGMA * math.hypot(se_before, se_after), (before, after)
    assert after > 0.9, after
    assert trainer.energy_evaluations == 300 * 2 * 256
    assert "mcmc_acceptance" in trainer.history[-1]


def test_mcmc_loss_cuts_both_energies_alike():
    """An exact generator under a target shifted far above the cut: D is still 0 (the loss log 4)
    and so is the acceptance 1, as without the shift."""
    generator = gaussian_generator()
    shifted = lambda x: 2000.0 + 0.5 * (x * x).sum(dim=1) / 4.0  # noqa: E731
    from openmm_bg.generator.model import BoltzmannGenerator

    far = BoltzmannGenerator(generator.prior, generator.flow, shifted, event_shape=(3,))
    x = 2.0 * torch.randn(32, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    term = mcmc_loss(far, x, "independence", energy_cut=1e3, rng=torch.Generator().manual_seed(4))
    assert term.loss.item() == pytest.approx(2 * math.log(2.0), abs=1e-9)
    assert term.acceptance == pytest.approx(1.0, abs=1e-9)
