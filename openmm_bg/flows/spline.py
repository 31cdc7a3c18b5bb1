"""Rational-quadratic spline coupling (neural spline flow, Durkan et al. 2019).

Each transformed dimension goes through a monotone rational-quadratic spline on
``[-bound, bound]`` whose knots are set by a network of the conditioning dimensions;
outside the interval the map is the identity (linear tails, unit slope at the ends).
A spline can put several modes into one dimension, which an affine coupling can only
do through its conditioning; backbone torsions of peptides are such dimensions.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .coupling import _Coupling
from .networks import MLP

__all__ = ["rational_quadratic_spline", "SplineCoupling"]


def _knots(raw: Tensor, bound: float, min_size: float) -> tuple[Tensor, Tensor]:
    """Knot positions (..., n_bins + 1) on [-bound, bound] and bin sizes (..., n_bins) from raw logits."""
    n_bins = raw.shape[-1]
    sizes = min_size + (1.0 - min_size * n_bins) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = 2.0 * bound * knots - bound
    knots = torch.cat([knots[..., :1].clamp(max=-bound), knots[..., 1:-1], knots[..., -1:].clamp(min=bound)], dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def rational_quadratic_spline(
    x: Tensor,
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_derivatives: Tensor,
    bound: float,
    inverse: bool = False,
    min_size: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline, identity outside ``[-bound, bound]``.

    Parameters
    ----------
    x : Tensor, shape (batch, d)
        Inputs (outputs of the forward map when ``inverse``).
    raw_widths, raw_heights : Tensor, shape (batch, d, n_bins)
        Unnormalised bin widths and heights (softmax over bins).
    raw_derivatives : Tensor, shape (batch, d, n_bins - 1)
        Unnormalised derivatives at the interior knots; 0 gives slope 1.
    bound : float
    inverse : bool
        Evaluate the inverse map.

    Returns
    -------
    y : Tensor, shape (batch, d)
    log_abs_det : Tensor, shape (batch, d)
        ``log |dy/dx|`` per dimension, of the map that was evaluated.
    """
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    xk, w = _knots(raw_widths, bound, min_size)
    yk, h = _knots(raw_heights, bound, min_size)
    # softplus scaled so that a raw value of 0 is slope 1; the end slopes are 1 to meet the identity tails
    d_inner = min_derivative + (1.0 - min_derivative) * F.softplus(raw_derivatives) / math.log(2.0)
    ones = torch.ones_like(d_inner[..., :1])
    d = torch.cat([ones, d_inner, ones], dim=-1)

    grid = yk if inverse else xk
    k = torch.searchsorted(grid[..., 1:-1].contiguous(), xc[..., None].contiguous()).clamp(max=w.shape[-1] - 1)
    take = lambda t: torch.gather(t, -1, k)[..., 0]  # noqa: E731 - one-line index helper
    x0, wk, y0, hk = take(xk), take(w), take(yk), take(h)
    d0, d1 = take(d[..., :-1]), take(d[..., 1:])
    s = hk / wk

    if inverse:
        dy = xc - y0
        a = hk * (s - d0) + dy * (d1 + d0 - 2.0 * s)
        b = hk * d0 - dy * (d1 + d0 - 2.0 * s)
        c = -s * dy
        disc = (b * b - 4.0 * a * c).clamp(min=0.0)
        xi = (2.0 * c) / (-b - torch.sqrt(disc))
        out = x0 + xi * wk
    else:
        xi = (xc - x0) / wk
        one_minus = 1.0 - xi
        denom = s + (d1 + d0 - 2.0 * s) * xi * one_minus
        out = y0 + hk * (s * xi * xi + d0 * xi * one_minus) / denom

    one_minus = 1.0 - xi
    denom = s + (d1 + d0 - 2.0 * s) * xi * one_minus
    numer = s * s * (d1 * xi * xi + 2.0 * s * xi * one_minus + d0 * one_minus * one_minus)
    ladj = torch.log(numer) - 2.0 * torch.log(denom)
    if inverse:
        ladj = -ladj
    y = torch.where(inside, out, x)
    return y, torch.where(inside, ladj, torch.zeros_like(ladj))


class SplineCoupling(_Coupling):
    """Coupling layer whose transformed part goes through conditioned rational-quadratic splines.

    forward: ``z1 = x1``, ``z2 = RQS(x2; theta(x1))`` element-wise, ``ladj = sum log|RQS'|``.
    A zero-initialised network gives equal bins and unit slopes: the identity.

    Parameters
    ----------
    mask : BoolTensor, shape (dim,)
        ``True`` marks the conditioning dimensions x1.
    hidden : sequence of int
        Hidden widths of the network that sets the knots.
    n_bins : int
        Bins per spline.
    bound : float
        Half-width of the spline interval; the map is the identity outside it.
    activation : str
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int] = (64, 64), n_bins: int = 8, bound: float = 5.0, activation: str = "relu"):
        super().__init__(mask)
        if n_bins < 2 or not bound > 0:
            raise ValueError(f"n_bins must be at least 2 and bound positive, got {n_bins}, {bound}")
        self.n_bins = int(n_bins)
        self.bound = float(bound)
        self.knots = MLP(self.n_cond, self.n_trans * (3 * self.n_bins - 1), hidden, activation)

    def _spline(self, cond: Tensor, values: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        theta = self.knots(cond).reshape(cond.shape[0], self.n_trans, 3 * self.n_bins - 1)
        widths, heights, derivatives = theta.split([self.n_bins, self.n_bins, self.n_bins - 1], dim=-1)
        out, ladj = rational_quadratic_spline(values, widths, heights, derivatives, self.bound, inverse=inverse)
        return out, ladj.sum(dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = self._split(x, "x")
        z2, ladj = self._spline(x1, x2, inverse=False)
        return self._merge(x1, z2), ladj

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z1, z2 = self._split(z, "z")
        x2, ladj = self._spline(z1, z2, inverse=True)
        return self._merge(z1, x2), ladj
