"""The latent prior: a Gaussian whose width follows the temperature, uniform on circular dimensions."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..flows.base import check_flat
from ..flows.circular import wrap_turn

__all__ = ["NormalPrior"]


class NormalPrior:
    r"""Gaussian prior ``N(0, sigma^2 tau I)`` in ``dim`` dimensions, uniform on circular ones.

    ``tau = T / T0`` is the temperature relative to the reference temperature.
    Reduced energies scale as ``u_tau = u_0 / tau``, so the prior energy is

    .. math:: u_Z(z; \tau) = \frac{\lVert z_\mathrm{lin} \rVert^2}{2 \sigma^2 \tau}

    and its normalisation is ``log Z_q = (n_lin / 2) log(2 pi sigma^2 tau) + n_circ log 2``,
    so that ``log_prob = -energy - log_normalizer``.  A circular dimension (an angle in
    turns, ``[-1, 1)``, as :class:`~openmm_bg.flows.CircularSplineCoupling` uses) is
    uniform at every temperature: a flat density stays flat when heated.

    Parameters
    ----------
    dim : int
        Number of latent dimensions.
    sigma : float
        Standard deviation at the reference temperature (``tau = 1``).
    circular : BoolTensor, shape (dim,), optional
        Dimensions that are angles in turns; default none.
    """

    def __init__(self, dim: int, sigma: float = 1.0, circular: Tensor | None = None):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.dim = int(dim)
        self.sigma = float(sigma)
        circular = torch.zeros(self.dim, dtype=torch.bool) if circular is None else torch.as_tensor(circular)
        if circular.dtype != torch.bool or circular.shape != (self.dim,):
            raise ValueError(f"circular must be a boolean mask of shape ({self.dim},), got dtype {circular.dtype} and shape {tuple(circular.shape)}")
        self.circular = circular.clone()

    @property
    def n_circular(self) -> int:
        """Number of circular (uniform) dimensions."""
        return int(self.circular.sum())

    def __repr__(self) -> str:
        extra = f", circular={self.n_circular}" if self.n_circular else ""
        return f"NormalPrior(dim={self.dim}, sigma={self.sigma}{extra})"

    def _variance(self, temperature: float) -> float:
        if not temperature > 0:
            raise ValueError(f"temperature (relative to the reference) must be positive, got {temperature}")
        return self.sigma**2 * float(temperature)

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` latent vectors.

        Returns
        -------
        z : Tensor, shape (n, dim)
        """
        std = math.sqrt(self._variance(temperature))
        z = std * torch.randn(n, self.dim, generator=generator, dtype=dtype, device=device)
        if self.n_circular:
            uniform = 2.0 * torch.rand(n, self.n_circular, generator=generator, dtype=dtype, device=device) - 1.0
            z[:, self.circular.to(z.device)] = uniform
        return z

    def wrap(self, z: Tensor) -> Tensor:
        """``z`` with its circular dimensions brought into ``[-1, 1)``: a latent step on the torus."""
        if not self.n_circular:
            return z
        circular = self.circular.to(z.device)
        return torch.where(circular, wrap_turn(z), z)

    def energy(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Prior energy ``u_Z(z) = |z_lin|^2 / (2 sigma^2 tau)`` in kT, shape (batch,)."""
        check_flat(z, self.dim, "z")
        linear = z[:, ~self.circular.to(z.device)] if self.n_circular else z
        return 0.5 * (linear * linear).sum(dim=1) / self._variance(temperature)

    def log_normalizer(self, temperature: float = 1.0) -> float:
        """``log Z_q``: the prior's log partition function (see the class docstring)."""
        n_linear = self.dim - self.n_circular
        return 0.5 * n_linear * math.log(2.0 * math.pi * self._variance(temperature)) + self.n_circular * math.log(2.0)

    def log_prob(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Normalised log density of ``z``, shape (batch,); ``-inf`` where a circular value is outside ``[-1, 1)``."""
        log_p = -self.energy(z, temperature) - self.log_normalizer(temperature)
        if self.n_circular:
            zc = z[:, self.circular.to(z.device)]
            outside = ((zc < -1.0) | (zc >= 1.0)).any(dim=1)
            log_p = torch.where(outside, torch.full_like(log_p, -float("inf")), log_p)
        return log_p
