"""Generator recipes: functions that build an untrained generator from plain settings.

Checkpoints store the name of one of these functions and its keyword arguments
(see :func:`openmm_bg.generator.save_generator`), so every builder takes
``energy=None`` plus YAML-safe keywords, and builds the same architecture each time.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor

from .distributions import NormalPrior
from .energies.base import Energy
from .flows import real_nvp
from .generator import BoltzmannGenerator

__all__ = ["realnvp_generator"]


def realnvp_generator(
    energy: Energy | Callable[[Tensor], Tensor] | None = None,
    *,
    event_shape: Sequence[int],
    n_blocks: int = 4,
    hidden: Sequence[int] = (64, 64),
    scale_bound: float = 2.0,
    sigma: float = 1.0,
    double: bool = True,
) -> BoltzmannGenerator:
    """A Gaussian prior and a RealNVP flow acting directly on the flattened configuration.

    Parameters
    ----------
    energy : Energy, callable or None
    event_shape : sequence of int
        Shape of one configuration, e.g. ``[2]`` or ``[n_atoms, 3]``.
    n_blocks, hidden, scale_bound
        See :func:`openmm_bg.flows.real_nvp`.
    sigma : float
        Prior width.
    double : bool
        Use float64 parameters.
    """
    event_shape = tuple(int(s) for s in event_shape)
    dim = 1
    for s in event_shape:
        dim *= s
    flow = real_nvp(dim, n_blocks=n_blocks, hidden=tuple(hidden), scale_bound=scale_bound)
    generator = BoltzmannGenerator(NormalPrior(dim, sigma), flow, energy, event_shape=event_shape)
    return generator.double() if double else generator
