"""The Boltzmann generator: a prior, an invertible flow and a target energy.

Every draw from a generator goes through :meth:`BoltzmannGenerator.propose`
(prior -> configurations, rows outside the principal coordinate domain marked by
:func:`~openmm_bg.coordinates.guarded.inverse_in_domain`) and, when energies are
wanted, :meth:`BoltzmannGenerator.sample` (energies of the rows in the domain, a
failed energy as ``+inf``, log importance weights) [Noé, Olsson, Köhler & Wu,
Science 365, eaaw1147 (2019)].  The moves, ``openmm_bg.sampling`` and the
exploration loop call these; none repeats them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .prior import NormalPrior
from .._validation import ensure_count
from ..coordinates.guarded import inverse_in_domain
from ..energies.base import Energy, as_energy
from ..flows.base import Bijection
from ..flows.circular import CircularSplineCoupling

__all__ = ["GeneratorSample", "BoltzmannGenerator", "check_finite", "failed_as_inf"]


def check_finite(x: Tensor, name: str = "x") -> None:
    """Raise a ``ValueError`` naming how many entries of ``x`` are NaN or infinite."""
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.reshape(x.shape[0], -1).any(dim=1) if x.ndim > 1 else bad
        raise ValueError(f"{name} holds non-finite values (NaN or inf) in {int(rows.sum())} of {x.shape[0]} configurations")


def failed_as_inf(u: Tensor) -> Tensor:
    """Reduced energies with NaN (a failed evaluation) replaced by ``+inf``, never by a number."""
    return torch.where(torch.isnan(u), torch.full_like(u, float("inf")), u)


@dataclass
class GeneratorSample:
    """Configurations drawn from a Boltzmann generator, with everything needed to reweight them.

    Attributes
    ----------
    x : Tensor, shape (n, *event_shape)
        Configurations (nm for molecules); NaN in the rows outside the domain.
    z : Tensor, shape (n, latent_dim)
        The latent vectors they came from.
    log_prob : Tensor, shape (n,)
        Log density of the generator at ``x``, ``log p_X(x) = log q_Z(z) + log|det dz/dx|``;
        NaN outside the domain.
    energy : Tensor, shape (n,)
        Reduced target energy ``u(x)`` in kT; ``+inf`` where it could not be computed
        (and outside the domain, where it is not evaluated).
    log_weight : Tensor, shape (n,)
        Unnormalised log importance weight ``-u(x) - log p_X(x)``; ``-inf`` where the energy is ``+inf``.
    in_domain : BoolTensor, shape (n,)
        Rows inside the principal coordinate domain
        (:func:`~openmm_bg.coordinates.guarded.principal_domain`); the others have zero weight.
    """

    x: Tensor
    z: Tensor
    log_prob: Tensor
    energy: Tensor
    log_weight: Tensor
    in_domain: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def finite(self) -> Tensor:
        """Boolean mask, shape (n,): samples whose energy is finite."""
        return torch.isfinite(self.energy)

    @property
    def n_out_of_domain(self) -> int:
        """Samples outside the principal coordinate domain (zero weight)."""
        return int((~self.in_domain).sum())

    def numpy(self) -> dict[str, np.ndarray]:
        """All fields as numpy arrays: float64, ``in_domain`` bool."""
        return {f.name: getattr(self, f.name).detach().cpu().numpy() if f.name == "in_domain" else getattr(self, f.name).detach().cpu().double().numpy() for f in fields(self)}


class BoltzmannGenerator(nn.Module):
    """A prior, an invertible flow and a target energy.

    Sampling draws ``z`` from the prior and maps it to configurations with
    ``flow.inverse``; densities use ``flow.forward`` (configuration -> latent).

    Parameters
    ----------
    prior : NormalPrior
        Latent distribution; its ``dim`` is the flow's latent size.
    flow : Bijection
        Maps configurations (batch, *event_shape) to latents (batch, prior.dim).
    energy : Energy, callable or None
        Reduced target energy at the reference temperature; a plain callable maps a
        tensor (batch, *event_shape) to (batch,).  ``None`` gives a generator that can
        propose configurations and evaluate its own density (what an MCMC move needs)
        but not compute energies or weights.
    event_shape : tuple of int, optional
        Shape of one configuration; taken from ``energy`` when it is an :class:`Energy`.
    """

    def __init__(
        self,
        prior: NormalPrior,
        flow: Bijection,
        energy: Energy | Callable[[Tensor], Tensor] | None,
        event_shape: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if not isinstance(prior, NormalPrior):
            raise TypeError(f"prior must be a NormalPrior, got {type(prior).__name__}")
        if not isinstance(flow, Bijection):
            raise TypeError(f"flow must be a Bijection, got {type(flow).__name__}")
        if event_shape is None:
            if not isinstance(energy, Energy):
                raise ValueError("event_shape is required when energy is a plain callable")
            event_shape = tuple(energy.event_shape)
        for layer in flow.modules():
            if isinstance(layer, CircularSplineCoupling) and not torch.equal(layer.circular.cpu(), prior.circular):
                # a periodic flow has many latents per configuration unless the prior lives on the same circles
                raise ValueError(
                    f"the flow's circular dimensions {torch.nonzero(layer.circular).flatten().tolist()} differ from the prior's "
                    f"{torch.nonzero(prior.circular).flatten().tolist()}; build the prior with NormalPrior(dim, circular=...)"
                )
        self.prior = prior
        self.flow = flow
        self.event_shape = tuple(int(s) for s in event_shape)
        self.target = None if energy is None else as_energy(energy, self.event_shape)

    @property
    def dim(self) -> int:
        """Number of latent dimensions."""
        return self.prior.dim

    def _param_like(self) -> Tensor:
        for tensor in list(self.flow.parameters()) + list(self.flow.buffers()):
            if tensor.is_floating_point():
                return tensor
        return torch.zeros(())

    def _as_batch(self, x: Tensor, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        n_event = int(np.prod(self.event_shape))
        if x.ndim < 1 or (tuple(x.shape[1:]) != self.event_shape and tuple(x.shape[1:]) != (n_event,)):
            raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], *self.event_shape)

    def _require_target(self) -> Energy:
        if self.target is None:
            raise ValueError("this generator has no target energy; build it with energy=... to compute energies and weights")
        return self.target

    def energy(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Reduced target energy at relative temperature ``tau``: ``u_0(x) / tau``, shape (batch,)."""
        return self._require_target()(self._as_batch(x)) / temperature

    def log_prob(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """Log density of the generator at configurations ``x``, shape (batch,).

        Raises ``ValueError`` for non-finite input.
        """
        x = self._as_batch(x)
        check_finite(x, "x")
        z, ladj = self.flow.forward(x)
        return self.prior.log_prob(z, temperature) + ladj

    def propose(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_grad: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``n`` configurations without evaluating the target energy.

        Parameters
        ----------
        n : int
        temperature : float
            Relative temperature ``T / T0``: the prior widens by ``sqrt(tau)``.
        generator : torch.Generator, optional
            Source of randomness for the prior.
        with_grad : bool
            Keep the autograd graph (for training).

        Returns
        -------
        x : Tensor, shape (n, *event_shape)
            NaN in the rows outside the principal coordinate domain.
        z : Tensor, shape (n, latent_dim)
        log_prob : Tensor, shape (n,)
            Generator log density at ``x``; NaN exactly in the rows outside the domain,
            so ``torch.isfinite(log_prob)`` is the domain mask.
        """
        n = ensure_count(n, "the number of samples")
        like = self._param_like()
        with torch.set_grad_enabled(with_grad):
            z = self.prior.sample(n, temperature, generator=generator, dtype=like.dtype, device=like.device)
            x, ladj_zx, _ = inverse_in_domain(self.flow, z)
            return x.reshape(n, *self.event_shape), z, self.prior.log_prob(z, temperature) - ladj_zx

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_grad: bool = False,
        energy: Callable[[Tensor], Tensor] | None = None,
    ) -> GeneratorSample:
        """Draw ``n`` configurations with their densities, energies and log weights.

        The one way to draw weighted samples: :meth:`propose`, then the energy of the
        rows in the domain only (the others get ``+inf`` and weight zero, without an
        evaluation), a NaN energy counted as failed (``+inf``), and
        ``log w = -u(x) - log p_X(x)``, ``-inf`` where ``u`` is ``+inf``.

        Parameters
        ----------
        n : int
        temperature : float
            Relative temperature ``T / T0``: the prior widens by ``sqrt(tau)`` and the
            target energy is ``u_0 / tau``.
        generator : torch.Generator, optional
            Source of randomness for the prior.
        with_grad : bool
            Keep the autograd graph (for training); by default sampling runs under ``no_grad``.
        energy : callable, optional
            Reduced energy ``u_0`` at the reference temperature, Tensor (batch, *event_shape)
            -> (batch,); default the generator's target.

        Returns
        -------
        GeneratorSample
        """
        energy = self._require_target() if energy is None else energy
        x, z, log_prob = self.propose(n, temperature, generator, with_grad)
        in_domain = torch.isfinite(log_prob)
        with torch.set_grad_enabled(with_grad):
            u = torch.full_like(log_prob, float("inf"))
            if bool(in_domain.any()):
                rows = torch.nonzero(in_domain).flatten()
                u = u.index_put((rows,), (energy(x[rows]) / temperature).to(u.dtype))
            u = failed_as_inf(u)
            log_weight = torch.where(torch.isfinite(u), -u - log_prob, torch.full_like(u, -float("inf")))
        return GeneratorSample(x=x, z=z, log_prob=log_prob, energy=u, log_weight=log_weight, in_domain=in_domain)
