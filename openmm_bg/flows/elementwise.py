"""Elementwise layers: scaling, exponential scaling and permutations."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bijection, check_flat

__all__ = ["Scaling", "ExpScaling", "Permutation", "SwapHalves", "Flatten"]


class Scaling(Bijection):
    """Elementwise scaling ``z = s * x`` with trainable factors ``s`` (initialised to 1).

    ``ladj = sum log|s_i|``.  A factor that reaches zero makes the layer singular;
    prefer :class:`ExpScaling` when signs need not change.

    Parameters
    ----------
    dim : int
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.s = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, "x")
        return x * self.s, torch.log(torch.abs(self.s)).sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, self.dim, "z")
        return z / self.s, -torch.log(torch.abs(self.s)).sum().expand(z.shape[0])


class ExpScaling(Bijection):
    """Elementwise positive scaling ``z = exp(k) * x`` with trainable ``k`` (initialised to 0).

    ``ladj = sum k_i``.

    Parameters
    ----------
    dim : int
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.k = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, "x")
        return x * torch.exp(self.k), self.k.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, self.dim, "z")
        return z * torch.exp(-self.k), (-self.k.sum()).expand(z.shape[0])


class Permutation(Bijection):
    """A fixed permutation of the dimensions, ``z = x[:, permutation]``; ``ladj = 0``.

    Parameters
    ----------
    permutation : LongTensor, shape (dim,)
        A permutation of ``0 .. dim-1``.
    """

    def __init__(self, permutation: Tensor):
        super().__init__()
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        dim = permutation.numel()
        if permutation.ndim != 1 or not torch.equal(torch.sort(permutation).values, torch.arange(dim)):
            raise ValueError(f"permutation must be a rearrangement of 0..{dim - 1}, got {permutation.tolist()}")
        self.dim = dim
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator | None = None) -> "Permutation":
        """A uniformly random permutation of ``dim`` dimensions drawn from ``generator``."""
        return cls(torch.randperm(dim, generator=generator))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(x, self.dim, "x")
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, self.dim, "z")
        return z[:, self.inverse_permutation], z.new_zeros(z.shape[0])


class SwapHalves(Permutation):
    """Channel swap: the second half of the dimensions moves to the front.

    Parameters
    ----------
    dim : int
    """

    def __init__(self, dim: int):
        half = dim // 2
        super().__init__(torch.cat([torch.arange(half, dim), torch.arange(half)]))


class Flatten(Bijection):
    """Reshape configurations ``(batch, *event_shape)`` to flat vectors ``(batch, dim)`` and back; ``ladj = 0``.

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one configuration, e.g. ``(n_particles, 3)``.
    """

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.dim = int(torch.tensor(self.event_shape).prod())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or x.ndim < 1 or tuple(x.shape[1:]) not in (self.event_shape, (self.dim,)):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.event_shape))}), got {got}")
        return x.reshape(x.shape[0], self.dim), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, self.dim, "z")
        return z.reshape(z.shape[0], *self.event_shape), z.new_zeros(z.shape[0])
