"""Spline couplings on a product of circles and lines, for torsions kept as angles.

Torsions live on a circle.  Mapping them onto the real line (cutting each circle
somewhere) puts a hard edge into the density, and a state that straddles the cut is
split in two.  Here a torsion stays an angle from configuration to latent: it is
measured in turns, ``[-1, 1)``, and transformed by periodic rational-quadratic splines
(Rezende et al. 2020, "Normalizing flows on tori and spheres") followed by a
conditioned rotation, which together can move any point of the circle anywhere.
The latent torsions are then uniform on the circle (:class:`~openmm_bg.generator.prior.NormalPrior`
with a ``circular`` mask).  The other coordinates go through ordinary splines with
identity tails, as in :class:`~openmm_bg.flows.SplineCoupling`.

The conditioner sees a circular input through ``cos(pi x), sin(pi x)``, so that its
output, and with it the density, is continuous across the point ``-1 == 1``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .base import Bijection, Sequential, check_flat
from .coupling import _Coupling
from .networks import MLP
from .spline import rational_quadratic_spline

__all__ = ["wrap_turn", "CircularSplineCoupling", "stratified_masks", "circular_spline"]


def wrap_turn(x: Tensor) -> Tensor:
    """Angles in turns brought into ``[-1, 1)``."""
    return torch.remainder(x + 1.0, 2.0) - 1.0


def _as_mask(mask, dim: int | None, name: str) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool or mask.ndim != 1 or (dim is not None and mask.numel() != dim):
        raise ValueError(f"{name} must be a 1-D boolean mask{'' if dim is None else f' of {dim} entries'}, got dtype {mask.dtype} and shape {tuple(mask.shape)}")
    return mask


class CircularSplineCoupling(_Coupling):
    """Spline coupling on a product of circles (in turns, ``[-1, 1)``) and lines.

    forward: ``z1 = x1``; a circular ``x2`` goes to ``wrap(RQS_periodic(x2) + shift)``, a
    linear one to ``RQS(x2)`` with identity tails outside ``[-bound, bound]``; the
    splines and shifts are set by a network of ``x1`` (circular parts as cos, sin).
    ``ladj = sum log|RQS'|`` (a rotation of the circle has unit Jacobian).
    A zero-initialised network gives the identity.

    Parameters
    ----------
    mask : BoolTensor, shape (dim,)
        ``True`` marks the conditioning dimensions x1.
    circular : BoolTensor, shape (dim,)
        ``True`` marks the periodic dimensions; their values must lie in ``[-1, 1)``.
    hidden : sequence of int
        Hidden widths of the conditioner.
    n_bins : int
        Bins per spline.
    bound : float
        Half-width of the linear dimensions' spline interval.
    activation : str
    """

    def __init__(
        self,
        mask: Tensor,
        circular: Tensor,
        hidden: Sequence[int] = (64, 64),
        n_bins: int = 8,
        bound: float = 5.0,
        activation: str = "relu",
    ):
        super().__init__(mask)
        if n_bins < 2 or not bound > 0:
            raise ValueError(f"n_bins must be at least 2 and bound positive, got {n_bins}, {bound}")
        circular = _as_mask(circular, self.dim, "circular")
        self.register_buffer("circular", circular.clone())
        self.n_bins = int(n_bins)
        self.bound = float(bound)
        cond_circular = circular[self.cond_index]
        trans_circular = circular[self.trans_index]
        # positions within x1 / x2 of each kind, fixed at construction
        self.register_buffer("_cond_circ", torch.nonzero(cond_circular).flatten(), persistent=False)
        self.register_buffer("_cond_lin", torch.nonzero(~cond_circular).flatten(), persistent=False)
        self.register_buffer("_trans_circ", torch.nonzero(trans_circular).flatten(), persistent=False)
        self.register_buffer("_trans_lin", torch.nonzero(~trans_circular).flatten(), persistent=False)
        # the same, as columns of the full input; and the order that puts [x1, x2_lin, x2_circ]
        # back, so that a step reads and writes each part once (no scatter into x2)
        self.register_buffer("_lin_index", self.trans_index[self._trans_lin], persistent=False)
        self.register_buffer("_circ_index", self.trans_index[self._trans_circ], persistent=False)
        order = torch.cat([self.cond_index, self._lin_index, self._circ_index])
        self.register_buffer("_merge_index", torch.argsort(order), persistent=False)
        n_in = self.n_cond + self._cond_circ.numel()
        # a linear dimension: K widths, K heights, K - 1 inner slopes; a circular one: also the end slope and a shift
        self._sizes = (self._trans_lin.numel() * (3 * self.n_bins - 1), self._trans_circ.numel() * (3 * self.n_bins + 1))
        self.knots = MLP(n_in, sum(self._sizes), hidden, activation)

    def _features(self, x1: Tensor) -> Tensor:
        angle = math.pi * x1[:, self._cond_circ]
        return torch.cat([x1[:, self._cond_lin], torch.cos(angle), torch.sin(angle)], dim=1)

    def _transform(self, x: Tensor, name: str, inverse: bool) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, name)
        x1 = x[:, self.cond_index]
        n, k = x.shape[0], self.n_bins
        theta_lin, theta_circ = self.knots(self._features(x1)).split(self._sizes, dim=1)
        parts, ladj = [x1], None
        if self._lin_index.numel():
            w, h, d = theta_lin.reshape(n, -1, 3 * k - 1).split([k, k, k - 1], dim=-1)
            y, step = rational_quadratic_spline(x[:, self._lin_index], w, h, d, self.bound, inverse=inverse)
            parts.append(y)
            ladj = step.sum(dim=1)
        if self._circ_index.numel():
            w, h, d, shift = theta_circ.reshape(n, -1, 3 * k + 1).split([k, k, k, 1], dim=-1)
            v = x[:, self._circ_index]
            if inverse:
                v = wrap_turn(v - shift[..., 0])
            y, step = rational_quadratic_spline(v, w, h, d, 1.0, inverse=inverse, periodic=True)
            if not inverse:
                y = wrap_turn(y + shift[..., 0])
            parts.append(y)
            ladj = step.sum(dim=1) if ladj is None else ladj + step.sum(dim=1)
        return torch.cat(parts, dim=1)[:, self._merge_index], ladj

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, "x", inverse=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z, "z", inverse=True)


def stratified_masks(circular: Tensor, n_blocks: int, seed: int = 0) -> list[Tensor]:
    """One conditioning mask per block, each a random half of the circular and a random half of the linear dimensions.

    Every coupling then transforms torsions and other coordinates together, conditioned on
    the rest of both kinds: torsions on torsions (phi on psi, say) and bonds and angles on
    torsions.  Fresh halves each block mix every pair of dimensions within a few blocks.

    Returns
    -------
    list of BoolTensor, each shape (dim,)
    """
    circular = _as_mask(circular, None, "circular")
    if circular.numel() < 2:
        raise ValueError(f"a coupling needs at least 2 dimensions, got {circular.numel()}")
    rng = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(n_blocks):
        mask = torch.zeros_like(circular)
        for kind in (circular, ~circular):
            index = torch.nonzero(kind).flatten()
            chosen = index[torch.randperm(index.numel(), generator=rng)[: (index.numel() + 1) // 2]]
            mask[chosen] = True
        if mask.all():  # one dimension of each kind: both halves would be the whole
            mask[torch.nonzero(~circular).flatten()] = False
        masks.append(mask)
    return masks


def circular_spline(
    dim: int,
    circular: Tensor,
    n_blocks: int = 4,
    hidden: Sequence[int] = (128, 128),
    n_bins: int = 8,
    bound: float = 5.0,
    activation: str = "relu",
    seed: int = 0,
) -> Sequential:
    """A spline flow on circles and lines: ``n_blocks`` pairs of :class:`CircularSplineCoupling`.

    Each pair transforms one half and then the other half of :func:`stratified_masks`.
    It starts as the identity.

    Parameters
    ----------
    dim : int
    circular : BoolTensor, shape (dim,)
        The periodic dimensions, in turns ``[-1, 1)``.
    n_blocks, hidden, n_bins, bound, activation
        See :class:`CircularSplineCoupling`.
    seed : int
        Seed of the masks.

    Returns
    -------
    Sequential
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    circular = _as_mask(circular, dim, "circular")
    layers: list[Bijection] = []
    for mask in stratified_masks(circular, n_blocks, seed):
        layers.append(CircularSplineCoupling(mask, circular, hidden, n_bins, bound, activation))
        layers.append(CircularSplineCoupling(~mask, circular, hidden, n_bins, bound, activation))
    return Sequential(*layers)
