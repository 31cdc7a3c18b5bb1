r"""Training losses of a Boltzmann generator.

* ML, training by example: ``J_ML = E_{x ~ data}[-log p_X(x)]``.
* KL, training by energy: ``J_KL = E_{z ~ q_Z}[u(T_zx(z)) + log p_X(T_zx(z))]``, which equals
  ``KL(p_X || mu_X) - log Z_X``: an upper bound on the free energy ``F = -log Z_X``
  (M. Sadeghi, *Boltzmann Generators – Theory*, notes (2019), section 1.1; Noé, Olsson,
  Köhler & Wu, Science 365, eaaw1147 (2019)).  Its gradient is that of ``E[u - log|det J_zx|]``.
* RC, reaction-coordinate entropy: ``J_RC = E_{x ~ p_X}[log p(r(x))]`` with ``p(r)`` a Gaussian
  kernel density estimate over the batch; minimising it spreads samples along ``r``.
* MCMC, training for moves: the symmetric Barker acceptance of a generator move that starts
  from a data configuration, and the squared distance it jumps (:func:`mcmc_loss`).

The total loss is ``w_ML J_ML + w_KL J_KL + w_RC J_RC + w_MCMC J_MCMC``; :class:`openmm_bg.training.Trainer`
combines them.  Energies enter the KL loss through :func:`linlog_cut`, which is the
identity below ``cut`` and grows logarithmically above it, so that the overlapping
atoms of an untrained generator (energies of 10^10 kT and more) cannot dominate the
gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..coordinates.guarded import inverse_in_domain
from ..generator.model import BoltzmannGenerator

__all__ = ["linlog_cut", "ml_loss", "KLTerm", "kl_loss", "rc_loss", "MCMC_KINDS", "MCMCTerm", "mcmc_loss"]

#: the generator moves :func:`mcmc_loss` trains for
MCMC_KINDS = ("independence", "latent")


def linlog_cut(u: Tensor, cut: float | None) -> Tensor:
    """Regularised energy: ``u`` below ``cut``, ``cut + log(1 + u - cut)`` above it.

    Continuous with a continuous first derivative at ``cut``; ``+inf`` stays ``+inf``.

    Parameters
    ----------
    u : Tensor, shape (batch,), kT
    cut : float or None
        Energy (kT) above which growth becomes logarithmic; ``None`` disables the cut.
    """
    if cut is None:
        return u
    excess = torch.clamp(u - cut, min=0.0)
    return torch.where(u > cut, cut + torch.log1p(excess), u)


def ml_loss(generator: BoltzmannGenerator, x: Tensor, temperature: float = 1.0) -> Tensor:
    """Negative mean log-likelihood of configurations ``x`` under the generator (scalar).

    Parameters
    ----------
    x : Tensor, shape (batch, *event_shape)
        Training configurations; non-finite values raise ``ValueError``.
    """
    return -generator.log_prob(x, temperature).mean()


@dataclass
class KLTerm:
    """Result of :func:`kl_loss`.

    Attributes
    ----------
    loss : Tensor, scalar
        Mean of ``linlog_cut(u) + log p_X`` over the samples used.
    x : Tensor, shape (n_used, *event_shape)
        The samples that entered the loss (with their graph), e.g. for an RC loss.
    n_nonfinite : int
        Samples whose energy was not finite.
    """

    loss: Tensor
    x: Tensor
    n_nonfinite: int


def kl_loss(
    generator: BoltzmannGenerator,
    n: int,
    temperature: float = 1.0,
    energy_cut: float | None = None,
    rng: torch.Generator | None = None,
    drop_nonfinite: bool = False,
    target_temperature: float = 1.0,
) -> KLTerm:
    """Reverse KL (training by energy) at relative temperature ``temperature``.

    Parameters
    ----------
    n : int
        Number of latent samples.
    temperature : float
        ``T / T0``; prior and energy are scaled as in :class:`NormalPrior`.
    target_temperature : float
        Relative temperature of the distribution the generator itself is trained to
        represent at its own prior width: the energy is further divided by it.  Above 1 it
        trains a generator for a hot, smoother target (the start of temperature annealing,
        :mod:`openmm_bg.training.annealing`).
    energy_cut : float or None
        See :func:`linlog_cut`.
    rng : torch.Generator, optional
    drop_nonfinite : bool
        If False, a batch with non-finite energies gives a non-finite loss, which the
        caller must detect (``n_nonfinite > 0``) and skip.  If True, those samples are
        left out: the energy is re-evaluated on the finite ones so that no infinity
        reaches the gradient.
    """
    if not target_temperature > 0:
        raise ValueError(f"target_temperature must be positive, got {target_temperature!r}")
    target = generator._require_target()
    energy = target if target_temperature == 1.0 else (lambda x: target(x) / target_temperature)
    sample = generator.sample(n, temperature, generator=rng, with_grad=True, energy=energy)
    finite = sample.finite
    n_bad = int((~finite).sum())
    x, u, log_prob = sample.x, sample.energy, sample.log_prob
    if n_bad and drop_nonfinite:
        if n_bad == n:
            return KLTerm(loss=u.sum() * float("nan"), x=x[:0], n_nonfinite=n_bad)
        x, log_prob = x[finite], log_prob[finite]
        u = generator.energy(x, temperature) / target_temperature
    return KLTerm(loss=(linlog_cut(u, energy_cut) + log_prob).mean(), x=x, n_nonfinite=n_bad)


def rc_loss(x: Tensor, reaction_coordinate: Callable[[Tensor], Tensor], bandwidth: float) -> Tensor:
    r"""Reaction-coordinate entropy loss ``mean_i log p_hat(r_i)`` (scalar, differentiable).

    ``p_hat(r) = (1/N) sum_j N(r - r_j; bandwidth^2)`` is a Gaussian kernel density
    estimate over the batch itself, so the gradient pushes samples apart along ``r``.

    Parameters
    ----------
    x : Tensor, shape (batch, *event_shape)
        Generator samples, with their graph.
    reaction_coordinate : callable
        Maps ``x`` to ``r``, shape (batch,), differentiably.
    bandwidth : float
        Kernel width, in the units of ``r``.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    r = reaction_coordinate(x)
    if r.shape != (x.shape[0],):
        raise ValueError(f"reaction_coordinate must return shape ({x.shape[0]},), got {tuple(r.shape)}")
    diff = (r[:, None] - r[None, :]) / bandwidth
    log_kernel = -0.5 * diff**2 - math.log(bandwidth * math.sqrt(2 * math.pi))
    log_density = torch.logsumexp(log_kernel, dim=1) - math.log(r.shape[0])
    return log_density.mean()


@dataclass
class MCMCTerm:
    """Result of :func:`mcmc_loss`.

    Attributes
    ----------
    loss : Tensor, scalar
        Mean of ``log(2 + e^D + e^-D) - distance_weight * log |x' - x|^2`` over the moves used.
    acceptance : float
        Mean Metropolis acceptance ``min(1, e^D)`` of those moves.
    n_nonfinite : int
        Proposals that left the domain or whose energy was not finite (left out).
    n_energies : int
        Energy evaluations made.
    """

    loss: Tensor
    acceptance: float
    n_nonfinite: int
    n_energies: int


def mcmc_loss(
    generator: BoltzmannGenerator,
    x: Tensor,
    kind: str = "independence",
    step_size: float = 0.5,
    distance_weight: float | None = None,
    energy_cut: float | None = None,
    rng: torch.Generator | None = None,
) -> MCMCTerm:
    r"""Training for moves: symmetric Barker acceptance times squared jump, from data configurations.

    From each configuration ``x`` (with latent ``z = T_xz(x)``) one move is proposed:

    * ``kind="independence"`` (:class:`~openmm_bg.moves.BoltzmannGeneratorMove`): ``z'`` from
      the prior; the log Metropolis ratio is ``D = log w(x') - log w(x)`` with
      ``log w = -u - log p_X``;
    * ``kind="latent"`` (:class:`~openmm_bg.moves.LatentMetropolisMove`): ``z' = z + s N(0, I)``
      (wrapped on circular dimensions); ``D = -u(x') + log|J_zx(z')| + u(x) - log|J_zx(z)|``.

    Barker's acceptance ``1 / (1 + e^-D)`` forward and ``1 / (1 + e^D)`` backward sum to one;
    their product ``1 / (2 + e^D + e^-D)`` is largest when the move is as likely in both
    directions.  The loss is minus the log of that product, less the log squared distance
    of the jump, so that it rewards moves that are accepted *and* go far (F. Noé, notes on
    Boltzmann generators (2019), sections 3.4-3.6).  The distance is measured between ``x'``
    and ``x`` in the generator's own frame (``T_zx(T_xz(x))``, the canonical pose when
    the rigid body is removed), in the configuration's units.

    Parameters
    ----------
    generator : BoltzmannGenerator
    x : Tensor, shape (batch, *event_shape)
        Configurations from the data (or a chain); their energies are evaluated here.
    kind : str
        One of :data:`MCMC_KINDS`.
    step_size : float
        Latent step ``s`` (``kind="latent"``).
    distance_weight : float or None
        Weight of ``-log |x' - x|^2``; 0 trains for acceptance alone.  None: 1 for the latent
        move, whose step would otherwise shrink to nothing, and 0 for the independence move,
        whose jump does not depend on where it starts: there the reward only widens the
        generator at the cost of acceptance (a RealNVP generator for a 2-D Gaussian, trained
        300 steps from the prior, reached an acceptance of 0.64 with weight 1 and 0.99 with 0 in a hand probe;
        tests/test_losses.py asserts more than 0.9 with the default).
    energy_cut : float or None
        Applied in the loss to the rise in energy ``u(x') - u(x)`` (see :func:`linlog_cut`), so
        that ``D`` is exact below it; the reported acceptance uses the energies as they are.
    rng : torch.Generator, optional
    """
    if kind not in MCMC_KINDS:
        raise ValueError(f"kind must be one of {list(MCMC_KINDS)}, got {kind!r}")
    if distance_weight is None:
        distance_weight = 1.0 if kind == "latent" else 0.0
    if not step_size > 0 or not distance_weight >= 0:
        raise ValueError(f"step_size must be positive and distance_weight non-negative, got {step_size}, {distance_weight}")
    x = generator._as_batch(x)
    n = x.shape[0]
    z, ladj_xz = generator.flow.forward(x)
    with torch.no_grad():
        u = generator.energy(x)
        home = inverse_in_domain(generator.flow, z.detach())[0].reshape(x.shape)
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"{int((~torch.isfinite(u)).sum())} of the {n} data configurations have a non-finite energy")
    if kind == "independence":
        x_new, z_new, log_prob_new = generator.propose(n, generator=rng, with_grad=True)
        log_prob = generator.prior.log_prob(z) + ladj_xz
        ok = torch.isfinite(log_prob_new)
    else:
        noise = torch.randn(z.shape, generator=rng, dtype=z.dtype, device=z.device)
        z_new = generator.prior.wrap(z + step_size * noise)
        x_new, ladj_zx_new, ok = inverse_in_domain(generator.flow, z_new)
        x_new = x_new.reshape(x.shape)
    u_new = torch.full_like(u, float("inf"))
    if bool(ok.any()):
        rows = torch.nonzero(ok).flatten()
        u_new = u_new.index_put((rows,), generator.energy(x_new[rows]).to(u.dtype))
    finite = ok & torch.isfinite(u_new)
    n_bad = int((~finite).sum())
    if n_bad == n:
        return MCMCTerm(loss=z.sum() * float("nan"), acceptance=0.0, n_nonfinite=n_bad, n_energies=n + int(ok.sum()))
    def metropolis(u_to: Tensor, u_from: Tensor) -> Tensor:
        if kind == "independence":
            return (-u_to - log_prob_new[finite]) - (-u_from - log_prob[finite])
        return (-u_to + ladj_zx_new[finite]) - (-u_from - ladj_xz[finite])

    # the cut acts on the rise in energy, which is what D holds: D is exact for rises below the
    # cut (a move that climbs further is never accepted anyway) and grows only logarithmically beyond
    u_from = u[finite]
    log_ratio = metropolis(u_from + linlog_cut(u_new[finite] - u_from, energy_cut), u_from)
    # log(2 + e^D + e^-D) = 2 log(e^(D/2) + e^(-D/2)), stable for any D
    barker = 2.0 * torch.logaddexp(0.5 * log_ratio, -0.5 * log_ratio)
    jump = (x_new[finite] - home[finite]).reshape(int(finite.sum()), -1).square().sum(dim=1)
    loss = (barker - distance_weight * torch.log(jump)).mean()
    acceptance = float(torch.exp(torch.clamp(metropolis(u_new[finite], u[finite]).detach(), max=0.0)).sum()) / n
    return MCMCTerm(loss=loss, acceptance=acceptance, n_nonfinite=n_bad, n_energies=n + int(ok.sum()))
