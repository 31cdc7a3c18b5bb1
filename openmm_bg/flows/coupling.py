"""Coupling layers: NICE (additive), NICER blocks and RealNVP (affine).

A coupling layer splits the input dimensions into a conditioning part x1, passed
through unchanged, and a transformed part x2 whose update depends on x1 only.
The split is a boolean ``mask`` over the dimensions: ``True`` marks x1.
Formulas follow the table in section 2 of the method notes (Noe et al.).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import Bijection, Sequential, check_flat
from .networks import MLP

__all__ = ["half_mask", "AdditiveCoupling", "AffineCoupling", "NICERBlock", "RealNVPBlock"]


def half_mask(dim: int, first: bool = True) -> Tensor:
    """Boolean mask selecting the first (or, with ``first=False``, the second) half of ``dim`` dimensions.

    The first half holds ``dim // 2`` dimensions.
    """
    if dim < 2:
        raise ValueError(f"a coupling layer needs at least 2 dimensions, got dim={dim}")
    mask = torch.zeros(dim, dtype=torch.bool)
    mask[: dim // 2] = True
    return mask if first else ~mask


class _Coupling(Bijection):
    """Shared bookkeeping: index sets of the conditioning and transformed parts."""

    def __init__(self, mask: Tensor):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.ndim != 1 or mask.all() or not mask.any():
            raise ValueError(f"mask must be a 1-D boolean tensor with both True and False entries, got {mask.tolist()}")
        self.dim = mask.numel()
        self.register_buffer("cond_index", torch.nonzero(mask).flatten(), persistent=False)
        self.register_buffer("trans_index", torch.nonzero(~mask).flatten(), persistent=False)
        # Concatenating [x1, x2] and indexing with this restores the original order.
        order = torch.cat([self.cond_index, self.trans_index])
        self.register_buffer("unsplit_index", torch.argsort(order), persistent=False)

    @property
    def n_cond(self) -> int:
        return self.cond_index.numel()

    @property
    def n_trans(self) -> int:
        return self.trans_index.numel()

    def _split(self, x: Tensor, name: str) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, name)
        return x[:, self.cond_index], x[:, self.trans_index]

    def _merge(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.cat([x1, x2], dim=1)[:, self.unsplit_index]


class AdditiveCoupling(_Coupling):
    """NICE additive coupling, volume preserving.

    forward: ``z1 = x1``, ``z2 = x2 + P(x1)``; inverse: ``x2 = z2 - P(z1)``.  ``ladj = 0``.

    Parameters
    ----------
    mask : BoolTensor, shape (dim,)
        ``True`` marks the conditioning dimensions x1.
    hidden : sequence of int
        Hidden widths of the network P.
    activation : str
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int] = (64, 64), activation: str = "relu"):
        super().__init__(mask)
        self.shift = MLP(self.n_cond, self.n_trans, hidden, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = self._split(x, "x")
        return self._merge(x1, x2 + self.shift(x1)), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z1, z2 = self._split(z, "z")
        return self._merge(z1, z2 - self.shift(z1)), z.new_zeros(z.shape[0])


class AffineCoupling(_Coupling):
    """RealNVP affine coupling with separate scale (S) and translation (T) networks.

    forward: ``z1 = x1``, ``z2 = x2 * exp(s(x1)) + T(x1)``, ``ladj = sum s(x1)``;
    inverse: ``x2 = (z2 - T(z1)) * exp(-s(z1))``, ``ladj = -sum s(z1)``.

    The log-scale is bounded, ``s = bound * tanh(S(x1) / bound)``, so that one layer
    can stretch or shrink by at most ``exp(bound)`` and training cannot overflow.

    Parameters
    ----------
    mask : BoolTensor, shape (dim,)
        ``True`` marks the conditioning dimensions x1.
    hidden : sequence of int
        Hidden widths of S and T.
    scale_bound : float
        Largest absolute log-scale per dimension and layer.
    activation : str
        Hidden activation of both networks.
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int] = (64, 64), scale_bound: float = 2.0, activation: str = "relu"):
        super().__init__(mask)
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        self.scale_bound = float(scale_bound)
        self.scale = MLP(self.n_cond, self.n_trans, hidden, activation)
        self.translation = MLP(self.n_cond, self.n_trans, hidden, activation)

    def _log_scale(self, x1: Tensor) -> Tensor:
        return self.scale_bound * torch.tanh(self.scale(x1) / self.scale_bound)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = self._split(x, "x")
        s = self._log_scale(x1)
        return self._merge(x1, x2 * torch.exp(s) + self.translation(x1)), s.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z1, z2 = self._split(z, "z")
        s = self._log_scale(z1)
        return self._merge(z1, (z2 - self.translation(z1)) * torch.exp(-s)), -s.sum(dim=1)


class NICERBlock(Sequential):
    """Two additive couplings with swapped roles, so that every dimension is updated.

    forward: ``z2 = x2 + P(x1)``, then ``z1 = x1 + Q(z2)``.

    Parameters
    ----------
    dim : int
    hidden : sequence of int
        Hidden widths of P and Q.
    activation : str
    mask : BoolTensor, shape (dim,), optional
        Conditioning part of the first coupling; default the first half.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), activation: str = "relu", mask: Tensor | None = None):
        mask = half_mask(dim) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        super().__init__(AdditiveCoupling(mask, hidden, activation), AdditiveCoupling(~mask, hidden, activation))


class RealNVPBlock(Sequential):
    """Two affine couplings with swapped roles, so that every dimension is updated.

    Parameters
    ----------
    dim : int
    hidden : sequence of int
    scale_bound : float
    activation : str
    mask : BoolTensor, shape (dim,), optional
        Conditioning part of the first coupling; default the first half.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64),
        scale_bound: float = 2.0,
        activation: str = "relu",
        mask: Tensor | None = None,
    ):
        mask = half_mask(dim) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        super().__init__(
            AffineCoupling(mask, hidden, scale_bound, activation),
            AffineCoupling(~mask, hidden, scale_bound, activation),
        )
