"""The energy contract.

An energy is a callable that maps a batch of configurations to reduced energies
``u = U / kT`` (dimensionless), shape ``(batch,)``, as a torch tensor that carries
gradients with respect to the positions.  A configuration whose energy cannot be
computed (NaN input, a force field that blows up) gets ``+inf``; callers find
those with ``~torch.isfinite(u)``.  No energy is ever replaced by a finite value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from torch import Tensor

__all__ = ["Energy", "as_energy"]


class Energy(ABC):
    """Base class for reduced energies on configurations of a fixed shape.

    Attributes
    ----------
    event_shape : tuple of int
        Shape of one configuration, e.g. ``(2,)`` for a 2-D toy or
        ``(n_atoms, 3)`` for a molecule (positions in nm).
    """

    event_shape: tuple[int, ...]

    @property
    def dim(self) -> int:
        """Number of degrees of freedom of one configuration."""
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    def __call__(self, x: Tensor) -> Tensor:
        """Reduced energy of each configuration.

        Parameters
        ----------
        x : Tensor, shape (batch, *event_shape) or (batch, dim)

        Returns
        -------
        u : Tensor, shape (batch,), dimensionless (kT)
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim >= 1 and tuple(x.shape[1:]) in (tuple(self.event_shape), (self.dim,)):
            return self._energy(x.reshape(x.shape[0], *self.event_shape))
        raise ValueError(
            f"{type(self).__name__} expects shape (batch, {', '.join(map(str, self.event_shape))}) "
            f"or (batch, {self.dim}), got {tuple(x.shape)}"
        )

    @abstractmethod
    def _energy(self, x: Tensor) -> Tensor:
        """Energy of a batch already shaped ``(batch, *event_shape)``."""


class _CallableEnergy(Energy):
    def __init__(self, fn: Callable[[Tensor], Tensor], event_shape: tuple[int, ...]):
        self.fn = fn
        self.event_shape = tuple(event_shape)

    def _energy(self, x: Tensor) -> Tensor:
        u = self.fn(x)
        if not isinstance(u, Tensor) or u.shape != (x.shape[0],):
            got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"energy function must return a tensor of shape ({x.shape[0]},), got {got}")
        return u


def as_energy(energy: Energy | Callable[[Tensor], Tensor], event_shape: tuple[int, ...]) -> Energy:
    """Wrap a plain callable into an :class:`Energy` with a shape check.

    Parameters
    ----------
    energy : Energy or callable
        Maps a tensor of shape ``(batch, *event_shape)`` to reduced energies, shape ``(batch,)``.
    event_shape : tuple of int
        Shape of one configuration.
    """
    if isinstance(energy, Energy):
        if tuple(energy.event_shape) != tuple(event_shape) and energy.dim != _prod(event_shape):
            raise ValueError(f"energy works on configurations of shape {energy.event_shape}, expected {tuple(event_shape)}")
        return energy
    if not callable(energy):
        raise TypeError(f"energy must be callable (batch of configurations -> reduced energies), got {type(energy).__name__}")
    return _CallableEnergy(energy, event_shape)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
