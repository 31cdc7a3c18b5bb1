"""The bijection contract shared by every invertible layer.

Every layer maps configurations towards the latent space in ``forward`` and back
in ``inverse``::

    z, ladj_xz = layer.forward(x)   # ladj_xz = log |det dz/dx|, shape (batch,)
    x, ladj_zx = layer.inverse(z)   # ladj_zx = log |det dx/dz|, shape (batch,)

so that ``ladj_xz(x) + ladj_zx(z(x)) == 0``.  ``forward`` is T_xz and ``inverse``
is T_zx in the notation of Noe et al. (2019).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable

from torch import Tensor, nn

__all__ = ["Bijection", "Sequential", "Inverse", "check_flat"]


def check_flat(x: Tensor, dim: int, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is a batch of flat vectors of length ``dim``.

    Parameters
    ----------
    x : Tensor, shape (batch, dim)
    dim : int
        The expected event size.
    name : str
        What to call ``x`` in the error message.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {dim}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}")


class Bijection(nn.Module, ABC):
    """An invertible map with a tractable log-determinant.

    Subclasses implement :meth:`forward` (configuration -> latent) and
    :meth:`inverse` (latent -> configuration).  Both return the transformed
    tensor and the log absolute Jacobian determinant of *that* direction,
    shaped ``(batch,)``.
    """

    @abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` towards the latent space; return ``(z, log|det dz/dx|)``."""

    @abstractmethod
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``z`` towards configuration space; return ``(x, log|det dx/dz|)``."""


class Sequential(Bijection):
    """Composition of bijections, applied in order by ``forward``.

    ``Sequential(a, b).forward(x)`` is ``b.forward(a.forward(x))``; ``inverse``
    runs the layers in reverse order.  The log-determinants add up.
    """

    def __init__(self, *layers: Bijection | Iterable[Bijection]):
        super().__init__()
        if len(layers) == 1 and not isinstance(layers[0], nn.Module):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Bijection):
                raise TypeError(f"layer {i} must be a Bijection, got {type(layer).__name__}")
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Bijection:
        return self.layers[index]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, step = layer.forward(x)
            ladj = ladj + step
        return x, ladj

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ladj = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, step = layer.inverse(z)
            ladj = ladj + step
        return z, ladj


class Inverse(Bijection):
    """The inverse of a bijection: swaps ``forward`` and ``inverse``."""

    def __init__(self, bijection: Bijection):
        super().__init__()
        self.bijection = bijection

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.forward(z)
