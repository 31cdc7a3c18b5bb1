r"""Two particles on a line joined by a spring, the first confined to a box: a toy with an exact flow.

The toy of Binagia, Friedowitz & Hou, *Efficient Sampling of Equilibrium States using
Boltzmann Generators* (Stanford CS 230 project report), section 5.2.  With positions
``x = (x1, x2)`` the reduced energy is

.. math:: u(x) = k\,(x_2 - x_1)^2 \quad \text{for } 0 \le x_1 \le L, \qquad +\infty \text{ otherwise,}

so ``x1`` is uniform on ``[0, L]`` and the bond ``x2 - x1`` is an independent normal of
variance ``1 / (2k)``.  Everything is known in closed form:

* the partition function ``Z = L sqrt(pi / k)``;
* the density ``p(x) = exp(-u(x)) / Z``;
* the normalising transform, configuration to latent,

  .. math:: z_1 = \Phi^{-1}(x_1 / L), \qquad z_2 = \sqrt{2k}\,(x_2 - x_1),

  with ``Phi`` the standard normal distribution function, which carries ``p`` exactly to the
  standard normal.  (The report writes ``|x2 - x1|`` in ``z2``; with the absolute value the
  map is two-to-one and ``z2`` half-normal, so the signed bond is the bijection.)

:class:`HarmonicPairTransform` is that transform as a :class:`~openmm_bg.flows.Bijection`,
so a :class:`~openmm_bg.generator.BoltzmannGenerator` built on it is exact: every sample's
log weight is ``log Z``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validation import ensure_positive
from ..flows.base import Bijection, check_flat
from .base import Energy

__all__ = ["HarmonicPairInBox", "HarmonicPairTransform"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class HarmonicPairInBox(Energy):
    """Reduced energy ``k (x2 - x1)^2`` with ``0 <= x1 <= L``, and its exact references (module notes).

    Parameters
    ----------
    k : float
        Spring constant, kT per squared length unit.
    length : float
        Box length ``L`` of the first particle.

    Notes
    -----
    Call with a tensor of shape ``(batch, 2)``; returns ``u``, shape ``(batch,)``, kT:
    ``+inf`` where ``x1`` lies outside ``[0, L]`` (zero density, not a failed
    evaluation), with a zero gradient there.
    """

    event_shape = (2,)

    def __init__(self, k: float = 1.0, length: float = 3.0):
        self.k = ensure_positive(k, "k", "kT per squared length")
        self.length = ensure_positive(length, "length")

    def _energy(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        spring = self.k * (x2 - x1) ** 2
        inside = (x1 >= 0) & (x1 <= self.length)
        return torch.where(inside, spring, torch.full_like(spring, float("inf")))

    def log_partition(self) -> float:
        """``log Z = log(L sqrt(pi / k))``, the integral of ``exp(-u)`` over the plane."""
        return math.log(self.length) + 0.5 * math.log(math.pi / self.k)

    def log_density(self, x: Tensor) -> Tensor:
        """Log of the normalised Boltzmann density, ``-u(x) - log Z``; ``-inf`` outside the box.

        Parameters
        ----------
        x : Tensor, shape (batch, 2)

        Returns
        -------
        Tensor, shape (batch,)
        """
        return -self(x) - self.log_partition()

    def transform(self) -> "HarmonicPairTransform":
        """The exact normalising transform of this energy (float64)."""
        return HarmonicPairTransform(self.k, self.length)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` independent configurations from the exact density, shape (n, 2).

        Drawn as standard normal latents mapped by the exact transform's ``inverse``.
        """
        z = torch.randn(n, 2, generator=generator, dtype=dtype)
        return self.transform().to(dtype).inverse(z)[0]


class HarmonicPairTransform(Bijection):
    """The exact normalising transform of :class:`HarmonicPairInBox` (module notes).

    ``forward`` maps configurations with ``0 < x1 < L`` to latents:
    ``z1 = Phi^-1(x1 / L)``, ``z2 = sqrt(2k) (x2 - x1)``, with
    ``log|det dz/dx| = log sqrt(2k) - log L - log phi(z1)`` (``phi`` the standard
    normal density).  ``inverse`` maps any latent back: ``x1 = L Phi(z1)``,
    ``x2 = x1 + z2 / sqrt(2k)``; in float64, ``Phi(z1)`` rounds to 0 or 1 beyond
    ``|z1| ~ 8``, where ``x1`` lands on the box edge.

    Parameters
    ----------
    k, length : float
        As in :class:`HarmonicPairInBox`.
    """

    k: Tensor
    length: Tensor

    def __init__(self, k: float = 1.0, length: float = 3.0):
        super().__init__()
        # buffers, not floats: they follow .double() and .to(device), and a generator takes its dtype from them
        self.register_buffer("k", torch.tensor(ensure_positive(k, "k", "kT per squared length"), dtype=torch.float64))
        self.register_buffer("length", torch.tensor(ensure_positive(length, "length"), dtype=torch.float64))

    def _log_scale(self) -> Tensor:
        """``log sqrt(2k) - log L``, the constant part of ``log|det dz/dx|``."""
        return 0.5 * torch.log(2.0 * self.k) - torch.log(self.length)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(x, 2, "x")
        x1, x2 = x[:, 0], x[:, 1]
        if bool(((x1 <= 0) | (x1 >= self.length) | ~torch.isfinite(x1)).any()):
            raise ValueError(
                f"x1 must lie inside the box (0, {self.length.item()}); got values from {x1.min().item()} to {x1.max().item()}"
            )
        z1 = torch.special.ndtri(x1 / self.length)
        z2 = torch.sqrt(2.0 * self.k) * (x2 - x1)
        ladj = self._log_scale() + 0.5 * z1 * z1 + _LOG_SQRT_2PI
        return torch.stack([z1, z2], dim=1), ladj

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(z, 2, "z")
        z1, z2 = z[:, 0], z[:, 1]
        x1 = self.length * torch.special.ndtr(z1)
        x2 = x1 + z2 / torch.sqrt(2.0 * self.k)
        ladj = -(self._log_scale() + 0.5 * z1 * z1 + _LOG_SQRT_2PI)
        return torch.stack([x1, x2], dim=1), ladj

    def extra_repr(self) -> str:
        return f"k={self.k.item()}, length={self.length.item()}"
