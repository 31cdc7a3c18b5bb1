"""The latent prior: an isotropic Gaussian whose width follows the temperature."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..flows.base import check_flat

__all__ = ["NormalPrior"]


class NormalPrior:
    r"""Isotropic Gaussian prior ``N(0, sigma^2 tau I)`` in ``dim`` dimensions.

    ``tau = T / T0`` is the temperature relative to the reference temperature.
    Reduced energies scale as ``u_tau = u_0 / tau``, so the prior energy is

    .. math:: u_Z(z; \tau) = \frac{\lVert z \rVert^2}{2 \sigma^2 \tau}

    and its normalisation is ``log Z_q = (dim / 2) log(2 pi sigma^2 tau)``, so that
    ``log_prob = -energy - log_normalizer``.

    Parameters
    ----------
    dim : int
        Number of latent dimensions.
    sigma : float
        Standard deviation at the reference temperature (``tau = 1``).
    """

    def __init__(self, dim: int, sigma: float = 1.0):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.dim = int(dim)
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"NormalPrior(dim={self.dim}, sigma={self.sigma})"

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
        return std * torch.randn(n, self.dim, generator=generator, dtype=dtype, device=device)

    def energy(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Prior energy ``u_Z(z) = |z|^2 / (2 sigma^2 tau)`` in kT, shape (batch,)."""
        check_flat(z, self.dim, "z")
        return 0.5 * (z * z).sum(dim=1) / self._variance(temperature)

    def log_normalizer(self, temperature: float = 1.0) -> float:
        """``log Z_q = (dim/2) log(2 pi sigma^2 tau)``: the prior's log partition function."""
        return 0.5 * self.dim * math.log(2.0 * math.pi * self._variance(temperature))

    def log_prob(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Normalised log density of ``z``, shape (batch,)."""
        return -self.energy(z, temperature) - self.log_normalizer(temperature)
