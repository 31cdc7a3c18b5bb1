"""Analytic two-dimensional test energies with exactly known free energies.

All energies are reduced (in kT).  Exact references are computed by numerical
quadrature (:mod:`scipy.integrate`), independently of any sampling.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from .base import Energy

__all__ = ["DoubleWell", "MuellerBrown", "metropolis_samples"]


class DoubleWell(Energy):
    r"""The 2-D double well of Noe et al. (2019), bistable in x1 and harmonic in x2.

    .. math:: u(x_1, x_2) = \tfrac{a}{4} x_1^4 - \tfrac{b}{2} x_1^2 + c\,x_1 + \tfrac{d}{2} x_2^2

    The defaults ``a=4, b=12, c=1, d=1`` give ``x1^4 - 6 x1^2 + x1 + x2^2/2``, the
    system of the paper's figures.  :meth:`shallow` gives ``x1^4 - x1^2 + x1 + x2^2/2``.

    Parameters
    ----------
    a, b, c, d : float
        Quartic, quadratic, linear and harmonic coefficients; ``a > 0`` and ``d > 0``.
    """

    event_shape = (2,)

    def __init__(self, a: float = 4.0, b: float = 12.0, c: float = 1.0, d: float = 1.0):
        if a <= 0 or d <= 0:
            raise ValueError(f"the double well needs a > 0 and d > 0 to be normalisable, got a={a}, d={d}")
        self.a, self.b, self.c, self.d = float(a), float(b), float(c), float(d)

    @classmethod
    def shallow(cls) -> "DoubleWell":
        """``x1^4 - x1^2 + x1 + x2^2/2``, the double well of Binagia et al."""
        return cls(a=4.0, b=2.0, c=1.0, d=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        return 0.25 * self.a * x1**4 - 0.5 * self.b * x1**2 + self.c * x1 + 0.5 * self.d * x2**2

    def _u1(self, x1: np.ndarray | float) -> np.ndarray | float:
        return 0.25 * self.a * x1**4 - 0.5 * self.b * x1**2 + self.c * x1

    def free_energy_profile(self, x1: np.ndarray) -> np.ndarray:
        """Exact free energy along x1, ``-log p(x1)`` with ``p`` the normalised marginal density.

        The x2 integral is Gaussian and factorises out, so ``p(x1)`` is
        ``exp(-u1(x1))`` normalised by quadrature.

        Parameters
        ----------
        x1 : ndarray, shape (n,)

        Returns
        -------
        f : ndarray, shape (n,), kT
        """
        return self._u1(np.asarray(x1, dtype=float)) + self.log_partition_x1()

    def log_partition_x1(self, lower: float = -np.inf, upper: float = np.inf) -> float:
        """``log`` of the integral of ``exp(-u1(x1))`` over ``lower < x1 < upper``, by quadrature."""
        shift = self._minimum_energy_1d()
        value, _ = integrate.quad(lambda t: math.exp(-(self._u1(t) - shift)), lower, upper, limit=200, epsabs=0, epsrel=1e-12)
        return math.log(value) - shift

    def state_free_energy_difference(self) -> float:
        """Exact ``F(x1 > 0) - F(x1 < 0)`` in kT, by quadrature."""
        return -(self.log_partition_x1(0.0, np.inf) - self.log_partition_x1(-np.inf, 0.0))

    def _minimum_energy_1d(self) -> float:
        grid = np.linspace(-10, 10, 20001)
        return float(self._u1(grid).min())


class MuellerBrown(Energy):
    r"""The Mueller-Brown potential, scaled to reduced units by ``beta``.

    .. math:: u(x, y) = \beta \sum_{k=1}^{4} A_k \exp\!\big(a_k (x - x^0_k)^2 + b_k (x - x^0_k)(y - y^0_k) + c_k (y - y^0_k)^2\big)

    with the standard parameters of Mueller and Brown (1979).  Its three minima are
    A near (-0.56, 1.44), B near (0.62, 0.03) and the shallow C near (-0.05, 0.47).

    Parameters
    ----------
    beta : float
        Inverse temperature in inverse energy units of the potential; the
        default 0.1 puts minimum B 3.9 kT above minimum A.
    """

    event_shape = (2,)
    A = (-200.0, -100.0, -170.0, 15.0)
    a = (-1.0, -1.0, -6.5, 0.7)
    b = (0.0, 0.0, 11.0, 0.6)
    c = (-10.0, -10.0, -6.5, 0.7)
    x0 = (1.0, 0.0, -0.5, -1.0)
    y0 = (0.0, 0.5, 1.5, 1.0)
    #: integration box that holds all but a negligible fraction of the density at beta <= 1
    box = ((-2.5, 2.0), (-1.5, 3.0))

    def __init__(self, beta: float = 0.1):
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.beta = float(beta)

    def _terms(self, x, y, exp: Callable):
        total = 0.0
        for A, a, b, c, x0, y0 in zip(self.A, self.a, self.b, self.c, self.x0, self.y0):
            dx, dy = x - x0, y - y0
            total = total + A * exp(a * dx * dx + b * dx * dy + c * dy * dy)
        return self.beta * total

    def _energy(self, x: Tensor) -> Tensor:
        return self._terms(x[:, 0], x[:, 1], torch.exp)

    def energy_numpy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Reduced energy on numpy arrays of x and y (any matching shapes)."""
        return self._terms(np.asarray(x, float), np.asarray(y, float), np.exp)

    def _grid(self, n: int = 1501) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (x_lo, x_hi), (y_lo, y_hi) = self.box
        xs = np.linspace(x_lo, x_hi, n)
        ys = np.linspace(y_lo, y_hi, n)
        u = self.energy_numpy(xs[:, None], ys[None, :])
        return xs, ys, u

    def free_energy_profile(self, x1: np.ndarray, n: int = 1501) -> np.ndarray:
        """Exact free energy along x, ``-log p(x)`` with ``p`` the normalised marginal density.

        Computed by quadrature over y, normalised by quadrature over the box.

        Parameters
        ----------
        x1 : ndarray, shape (m,)
            Points inside the integration box.

        Returns
        -------
        f : ndarray, shape (m,), kT
        """
        xs, ys, u_grid = self._grid(n)
        shift = u_grid.min()
        log_z = np.log(integrate.simpson(integrate.simpson(np.exp(-(u_grid - shift)), x=ys, axis=1), x=xs)) - shift
        u = self.energy_numpy(np.asarray(x1, float)[:, None], ys[None, :])
        return -np.log(integrate.simpson(np.exp(-(u - shift)), x=ys, axis=1)) + shift + log_z

    def state_populations(self, indicators: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], n: int = 1501) -> dict[str, float]:
        """Exact populations of states given by indicator functions of (x, y), by 2-D quadrature.

        Parameters
        ----------
        indicators : dict of name -> callable
            Each maps numpy arrays ``x, y`` to a boolean array.

        Returns
        -------
        dict of name -> float
            Probability of each state.
        """
        xs, ys, u = self._grid(n)
        p = np.exp(-(u - u.min()))
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        norm = integrate.simpson(integrate.simpson(p, x=ys, axis=1), x=xs)
        out = {}
        for name, ind in indicators.items():
            mask = np.asarray(ind(X, Y), dtype=float)
            out[name] = float(integrate.simpson(integrate.simpson(p * mask, x=ys, axis=1), x=xs) / norm)
        return out


def metropolis_samples(
    energy: Energy,
    start: Tensor,
    n_samples: int,
    step: float = 0.2,
    n_chains: int = 100,
    thin: int = 10,
    burn_in: int = 200,
    seed: int = 0,
) -> Tensor:
    """Local Metropolis Monte Carlo, the toy stand-in for an MD trajectory.

    Chains start at ``start`` and move by Gaussian steps, so like MD they stay in the
    basin they start in when the barriers are high.

    Parameters
    ----------
    energy : Energy
        Reduced energy on tensors of shape (batch, *energy.event_shape).
    start : Tensor, shape event_shape
    n_samples : int
        Number of configurations returned (taken evenly from all chains).
    step : float
        Standard deviation of the Gaussian proposal.
    n_chains, thin, burn_in : int
        Parallel chains, steps between kept samples, and discarded first steps.
    seed : int

    Returns
    -------
    Tensor, shape (n_samples, *event_shape), float64
    """
    rng = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(start, dtype=torch.float64).expand(n_chains, *energy.event_shape).clone()
    u = energy(x)
    kept = []
    n_rounds = -(-n_samples // n_chains)
    for i in range(burn_in + n_rounds * thin):
        proposal = x + step * torch.randn(x.shape, generator=rng, dtype=torch.float64)
        u_new = energy(proposal)
        accept = torch.rand(n_chains, generator=rng, dtype=torch.float64).log() < u - u_new
        x = torch.where(accept.reshape(-1, *[1] * len(energy.event_shape)), proposal, x)
        u = torch.where(accept, u_new, u)
        if i >= burn_in and (i - burn_in) % thin == thin - 1:
            kept.append(x.clone())
    return torch.cat(kept)[:n_samples]
