"""Rational-quadratic spline coupling (neural spline flow, Durkan et al. 2019).

Each transformed dimension goes through a monotone rational-quadratic spline on
``[-bound, bound]`` whose knots are set by a network of the conditioning dimensions;
outside the interval the map is the identity (linear tails, unit slope at the ends).
A spline can put several modes into one dimension, which an affine coupling can only
do through its conditioning; backbone torsions of peptides are such dimensions.

With ``periodic=True`` the spline maps ``[-bound, bound]`` onto itself with the same
slope at both ends, a diffeomorphism of the circle (Rezende et al. 2020, "Normalizing
flows on tori and spheres"); :mod:`openmm_bg.flows.circular` builds on it.
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


def _knots(raw: Tensor, bound: float, min_size: float) -> Tensor:
    """Knot positions (..., n_bins + 1) on [-bound, bound] from raw logits (..., n_bins).

    The first knot is ``-bound`` exactly; the last is at least ``bound`` (the cumulative
    sum may round above it; below it would leave a gap before the tail).
    """
    n_bins = raw.shape[-1]
    sizes = min_size + (1.0 - min_size * n_bins) * torch.softmax(raw, dim=-1)
    knots = 2.0 * bound * torch.cumsum(sizes, dim=-1) - bound
    first = knots.new_full((*knots.shape[:-1], 1), -bound)
    return torch.cat([first, knots[..., :-1], knots[..., -1:].clamp(min=bound)], dim=-1)


def _slopes(raw: Tensor, min_derivative: float) -> Tensor:
    """Knot slopes from raw values: softplus scaled so that a raw value of 0 is slope 1."""
    # on a contiguous copy: softplus on a strided slice of the conditioner output is several times slower
    return min_derivative + (1.0 - min_derivative) * F.softplus(raw.contiguous()) / math.log(2.0)


def _spline_in_bins(x: Tensor, inside: Tensor, bound: float, xk: Tensor, yk: Tensor, slopes: Sequence[Tensor], inverse: bool) -> tuple[Tensor, Tensor]:
    """The rational-quadratic map on given knots, identity where not ``inside``.

    ``xk``, ``yk`` (..., n_bins + 1) on ``[-bound, bound]``; the slopes at the knots are
    ``torch.cat(slopes, -1)``, (..., n_bins + 1).
    """
    n_bins = xk.shape[-1] - 1
    xc = x.clamp(-bound, bound)
    # one table [x knots | y knots | slopes], each n_bins + 1 wide, and one gather of the
    # six values the bin needs (x0, x1, y0, y1, d0, d1), rather than six gathers
    table = torch.cat([xk, yk, *slopes], dim=-1)
    grid = yk if inverse else xk
    k = torch.searchsorted(grid[..., 1:-1].contiguous(), xc[..., None].contiguous())
    offsets = torch.tensor([0, 1, n_bins + 1, n_bins + 2, 2 * n_bins + 2, 2 * n_bins + 3], device=k.device)
    x0, x1, y0, y1, d0, d1 = torch.gather(table, -1, k + offsets).unbind(-1)
    wk, hk = x1 - x0, y1 - y0
    s = hk / wk
    d_sum = d1 + d0 - 2.0 * s

    if inverse:
        dy = xc - y0
        a = hk * (s - d0) + dy * d_sum
        b = hk * d0 - dy * d_sum
        c = -s * dy
        disc = (b * b - 4.0 * a * c).clamp(min=0.0)
        xi = (2.0 * c) / (-b - torch.sqrt(disc))
        out = x0 + xi * wk
    else:
        xi = (xc - x0) / wk
    one_minus = 1.0 - xi
    xi_one_minus = xi * one_minus
    denom = s + d_sum * xi_one_minus
    if not inverse:
        out = y0 + hk * (s * xi * xi + d0 * xi_one_minus) / denom
    numer = s * s * (d1 * xi * xi + 2.0 * s * xi_one_minus + d0 * one_minus * one_minus)
    ladj = torch.log(numer) - 2.0 * torch.log(denom)
    if inverse:
        ladj = -ladj
    return torch.where(inside, out, x), torch.where(inside, ladj, 0.0)


def rational_quadratic_spline(
    x: Tensor,
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_derivatives: Tensor,
    bound: float,
    inverse: bool = False,
    min_size: float = 1e-3,
    min_derivative: float = 1e-3,
    periodic: bool = False,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline, identity outside ``[-bound, bound]``.

    Parameters
    ----------
    x : Tensor, shape (batch, d)
        Inputs (outputs of the forward map when ``inverse``).
    raw_widths, raw_heights : Tensor, shape (batch, d, n_bins)
        Unnormalised bin widths and heights (softmax over bins).
    raw_derivatives : Tensor, shape (batch, d, n_bins - 1), or (batch, d, n_bins) when ``periodic``
        Unnormalised derivatives at the interior knots; 0 gives slope 1.  When
        ``periodic``, the first entry is the slope shared by both ends.
    bound : float
    inverse : bool
        Evaluate the inverse map.
    periodic : bool
        Circle mode: both ends have the slope the first raw derivative sets, so that
        the map is smooth across ``-bound == bound``; ``x`` must lie in ``[-bound, bound]``.

    Returns
    -------
    y : Tensor, shape (batch, d)
    log_abs_det : Tensor, shape (batch, d)
        ``log |dy/dx|`` per dimension, of the map that was evaluated.
    """
    inside = (x >= -bound) & (x <= bound) if periodic else (x > -bound) & (x < bound)
    xk = _knots(raw_widths, bound, min_size)
    yk = _knots(raw_heights, bound, min_size)
    slopes = _slopes(raw_derivatives, min_derivative)
    if periodic:
        ends, d_inner = slopes[..., :1], slopes[..., 1:]
    else:  # the end slopes are 1 to meet the identity tails
        ends, d_inner = torch.ones_like(slopes[..., :1]), slopes
    return _spline_in_bins(x, inside, bound, xk, yk, (ends, d_inner, ends), inverse)


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
