"""Cartesian <-> normalised internal coordinates with an explicit domain for sampling.

A flow's output covers all of R^d, but internal coordinates live in a box: bonds
are positive, angles lie in [0, pi], and each normalised torsion in [-1, 1), one
turn of its circle.  Wrapping a torsion that falls outside would give a
configuration two latent preimages and make its density wrong.  Instead, a latent
point whose image leaves the domain yields NaN positions: its energy is then
``+inf`` and its importance weight zero, which is exact, since the Boltzmann density
of the target, seen from the flow's space, vanishes outside the domain.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..flows.base import Bijection, check_flat
from .normalization import InternalCoordinateNormalization
from .transform import InternalCoordinateTransform

__all__ = ["GuardedCoordinates", "CircularToReal"]


class GuardedCoordinates(Bijection):
    """``forward``: positions -> normalised internal coordinates; ``inverse`` flags points outside the domain.

    Parameters
    ----------
    transform : InternalCoordinateTransform
    normalization : InternalCoordinateNormalization
        Fitted on ``transform.forward`` of training data.

    Attributes
    ----------
    n_out_of_domain : int
        Running count of latent points that ``inverse`` mapped to NaN.
    """

    def __init__(self, transform: InternalCoordinateTransform, normalization: InternalCoordinateNormalization):
        super().__init__()
        if normalization.circular.shape != transform.circular.shape or not torch.equal(normalization.circular, transform.circular):
            raise ValueError("the normalisation's circular mask does not match the transform's layout")
        self.transform = transform
        self.normalization = normalization
        self.n_out_of_domain = 0

    @property
    def dim(self) -> int:
        return self.transform.dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Positions (batch, n_atoms, 3) nm -> normalised coordinates (batch, dim), with ``log|det|``."""
        q, ladj_q = self.transform.forward(x)
        y, ladj_y = self.normalization.forward(q)
        return y, ladj_q + ladj_y

    def _checked(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Domain mask, internal coordinates with invalid rows replaced by the normalisation centre, and their ladj."""
        circular = self.normalization.circular
        ok = torch.isfinite(y).all(dim=1) & ((y[:, circular] >= -1) & (y[:, circular] < 1)).all(dim=1)
        q, ladj_y = self.normalization.inverse(torch.where(ok[:, None], y, torch.zeros_like(y)))
        ok = ok & self.transform.in_domain(q)
        # the normalisation centre is always a valid configuration, so the transform never raises
        centre, _ = self.normalization.inverse(torch.zeros_like(y[:1]))
        return ok, torch.where(ok[:, None], q, centre), ladj_y

    def in_domain(self, y: Tensor) -> Tensor:
        """BoolTensor (batch,): normalised coordinates that :meth:`inverse` maps to a configuration."""
        return self._checked(y)[0]

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised coordinates -> positions (batch, n_atoms, 3) nm; NaN rows (and ladj) outside the domain."""
        ok, q, ladj_y = self._checked(y)
        x, ladj_q = self.transform.inverse(q)
        n_bad = int((~ok).sum())
        if n_bad:
            self.n_out_of_domain += n_bad
            x = torch.where(ok[:, None, None], x, torch.full_like(x, float("nan")))
            ladj_q = torch.where(ok, ladj_q, torch.full_like(ladj_q, float("nan")))
        return x, ladj_q + ladj_y


class CircularToReal(Bijection):
    """``atanh`` on the circular dimensions, so that a flow on R^d maps onto one turn of each circle.

    forward: ``u = atanh(y)`` for ``y`` in (-1, 1) (a normalised torsion), identity elsewhere;
    ``ladj = -sum log(1 - y^2)``.  inverse: ``y = tanh(u)``.  Without it, a flow sends some
    of its mass outside [-1, 1), where those samples have zero weight and no gradient, and
    training by energy can push ever more of it there.

    Parameters
    ----------
    circular : BoolTensor, shape (dim,)
    """

    def __init__(self, circular: Tensor):
        super().__init__()
        circular = torch.as_tensor(circular)
        if circular.dtype != torch.bool or circular.ndim != 1:
            raise ValueError(f"circular must be a 1-D boolean mask, got dtype {circular.dtype} and shape {tuple(circular.shape)}")
        self.register_buffer("circular", circular.clone())

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(y, self.circular.shape[0], "normalised coordinates")
        yc = y[:, self.circular]
        outside = (yc <= -1) | (yc >= 1)
        if outside.any():
            raise ValueError(f"{int(outside.any(dim=1).sum())} configurations have a normalised torsion outside (-1, 1)")
        out = y.clone()
        out[:, self.circular] = torch.atanh(yc)
        return out, -torch.log1p(-yc * yc).sum(dim=1)

    def inverse(self, u: Tensor) -> tuple[Tensor, Tensor]:
        check_flat(u, self.circular.shape[0], "unconstrained coordinates")
        uc = u[:, self.circular]
        out = u.clone()
        out[:, self.circular] = torch.tanh(uc)
        # log(1 - tanh(u)^2) = 2 (log 2 - |u| - softplus(-2 |u|)), stable for large |u|
        a = uc.abs()
        return out, (2.0 * (math.log(2.0) - a - torch.nn.functional.softplus(-2.0 * a))).sum(dim=1)
