r"""Training losses of a Boltzmann generator.

* ML, training by example: ``J_ML = E_{x ~ data}[-log p_X(x)]``.
* KL, training by energy: ``J_KL = E_{z ~ q_Z}[u(T_zx(z)) + log p_X(T_zx(z))]``, which equals
  ``KL(p_X || mu_X) - log Z_X``: an upper bound on the free energy ``F = -log Z_X``
  (M. Sadeghi, *Boltzmann Generators – Theory*, notes (2019), section 1.1; Noé, Olsson,
  Köhler & Wu, Science 365, eaaw1147 (2019)).  Its gradient is that of ``E[u - log|det J_zx|]``.
* RC, reaction-coordinate entropy: ``J_RC = E_{x ~ p_X}[log p(r(x))]`` with ``p(r)`` a Gaussian
  kernel density estimate over the batch; minimising it spreads samples along ``r``.

The total loss is ``w_ML J_ML + w_KL J_KL + w_RC J_RC``; :class:`openmm_bg.training.Trainer`
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

from ..generator.model import BoltzmannGenerator

__all__ = ["linlog_cut", "ml_loss", "KLTerm", "kl_loss", "rc_loss"]


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
) -> KLTerm:
    """Reverse KL (training by energy) at relative temperature ``temperature``.

    Parameters
    ----------
    n : int
        Number of latent samples.
    temperature : float
        ``T / T0``; prior and energy are scaled as in :class:`NormalPrior`.
    energy_cut : float or None
        See :func:`linlog_cut`.
    rng : torch.Generator, optional
    drop_nonfinite : bool
        If False, a batch with non-finite energies gives a non-finite loss, which the
        caller must detect (``n_nonfinite > 0``) and skip.  If True, those samples are
        left out: the energy is re-evaluated on the finite ones so that no infinity
        reaches the gradient.
    """
    sample = generator.sample(n, temperature, generator=rng, with_grad=True)
    finite = sample.finite
    n_bad = int((~finite).sum())
    x, u, log_prob = sample.x, sample.energy, sample.log_prob
    if n_bad and drop_nonfinite:
        if n_bad == n:
            return KLTerm(loss=u.sum() * float("nan"), x=x[:0], n_nonfinite=n_bad)
        x, log_prob = x[finite], log_prob[finite]
        u = generator.energy(x, temperature)
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
