"""Normalisation of internal coordinates: an affine bijection with a constant log-determinant."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..flows.base import Bijection, check_flat

__all__ = ["InternalCoordinateNormalization"]


class InternalCoordinateNormalization(Bijection):
    """Standardise non-periodic coordinates and scale periodic ones to [-1, 1).

    ``forward`` maps ``q`` to ``(q - mean) / std`` on the non-circular
    dimensions (bonds, angles, rigid-body translation and ``theta``) and to
    ``wrap(q - offset) / pi`` on the circular ones, where ``wrap`` brings an
    angle into [-pi, pi).  The rotation by ``offset`` moves the cut of each
    circle, where the flow's range ends, to the angle ``offset + pi``; :meth:`fit`
    puts it where the training data are sparsest, so that no populated state is
    split in two.  A rotation of the circle has unit Jacobian, so the
    log-determinant is the constant ``-sum log std - n_circular log pi`` for
    ``forward``.  ``inverse`` does not wrap: it returns ``offset + pi y``.

    ``mean`` and ``std`` are registered buffers, so they travel with the
    model's ``state_dict``; to reload one, build the layer with the same
    ``circular`` mask and call ``load_state_dict``.

    Parameters
    ----------
    circular : BoolTensor, shape (dim,)
        Which dimensions are periodic with period 2 pi (e.g.
        ``InternalCoordinateTransform.circular``).
    mean : Tensor, shape (dim,), optional
        Centre of each dimension; ignored (kept at 0) for circular ones.
        Default 0.
    std : Tensor, shape (dim,), optional
        Width of each dimension, positive; ignored (kept at 1) for circular
        ones.  Default 1.
    offset : Tensor, shape (dim,), optional
        Rotation of each circular dimension, radians; ignored for the others.  Default 0.
    """

    def __init__(self, circular: Tensor, mean: Tensor | None = None, std: Tensor | None = None, offset: Tensor | None = None):
        super().__init__()
        circular = torch.as_tensor(circular)
        if circular.dtype != torch.bool or circular.ndim != 1:
            raise ValueError(f"circular must be a 1-D boolean mask, got dtype {circular.dtype} and shape {tuple(circular.shape)}")
        dim = circular.shape[0]
        mean = torch.zeros(dim, dtype=torch.float64) if mean is None else torch.as_tensor(mean, dtype=torch.float64)
        std = torch.ones(dim, dtype=torch.float64) if std is None else torch.as_tensor(std, dtype=torch.float64)
        for name, value in (("mean", mean), ("std", std)):
            if value.shape != (dim,):
                raise ValueError(f"{name} must have shape ({dim},) like circular, got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} must be finite")
        mean = torch.where(circular, torch.zeros_like(mean), mean)
        # a circular dimension is scaled by 1/pi: store pi as its width so that one affine map covers all
        std = torch.where(circular, torch.full_like(std, math.pi), std)
        if not (std > 0).all():
            raise ValueError(f"std must be positive, got minimum {float(std.min())}")
        offset = torch.zeros(dim, dtype=torch.float64) if offset is None else torch.as_tensor(offset, dtype=torch.float64)
        if offset.shape != (dim,) or not torch.isfinite(offset).all():
            raise ValueError(f"offset must be a finite tensor of shape ({dim},), got shape {tuple(offset.shape)}")
        self.register_buffer("circular", circular.clone())
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("offset", torch.where(circular, offset, torch.zeros_like(offset)))

    @classmethod
    def fit(cls, q: Tensor, circular: Tensor, min_std: float = 1e-8, n_angle_bins: int = 36) -> "InternalCoordinateNormalization":
        """Estimate means and widths from training data.

        Parameters
        ----------
        q : Tensor, shape (n_samples, dim)
            Internal coordinates, e.g. ``InternalCoordinateTransform.forward(x)[0]``.
        circular : BoolTensor, shape (dim,)
        min_std : float
            A non-circular dimension with a smaller standard deviation is
            rejected: a constant coordinate (a constrained bond left in, say)
            cannot be standardised.
        n_angle_bins : int
            Histogram bins used to find the sparsest angle of each circular
            dimension, where its cut is placed.

        Returns
        -------
        InternalCoordinateNormalization
        """
        circular = torch.as_tensor(circular)
        if circular.dtype != torch.bool or circular.ndim != 1:
            raise ValueError(f"circular must be a 1-D boolean mask, got dtype {circular.dtype} and shape {tuple(circular.shape)}")
        check_flat(q, circular.shape[0], "training internal coordinates")
        if q.shape[0] < 2:
            raise ValueError(f"fitting needs at least 2 samples, got {q.shape[0]}")
        if not torch.isfinite(q).all():
            raise ValueError("training internal coordinates hold non-finite values")
        data = q.detach().to(torch.float64)
        mean, std = data.mean(dim=0), data.std(dim=0)
        narrow = (std < min_std) & ~circular.to(std.device)
        if narrow.any():
            dims = narrow.nonzero().flatten().tolist()
            raise ValueError(f"dimensions {dims[:10]} have a standard deviation below {min_std}; a constant coordinate cannot be standardised")
        return cls(circular.cpu(), mean.cpu(), std.cpu(), _sparsest_cut_offsets(data, circular.cpu(), n_angle_bins))

    def _log_scale(self, q: Tensor) -> Tensor:
        return torch.log(self.std).sum().to(q.dtype).expand(q.shape[0])

    def forward(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise.

        Parameters
        ----------
        q : Tensor, shape (batch, dim)
            Internal coordinates (nm, radians).

        Returns
        -------
        y : Tensor, shape (batch, dim), dimensionless
        ladj : Tensor, shape (batch,)
            ``-sum log std`` (with ``std = pi`` on circular dimensions).
        """
        check_flat(q, self.std.shape[0], "internal coordinates")
        shifted = q - self.mean.to(q.dtype) - self.offset.to(q.dtype)
        shifted = torch.where(self.circular, torch.remainder(shifted + math.pi, 2 * math.pi) - math.pi, shifted)
        return shifted / self.std.to(q.dtype), -self._log_scale(q)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Undo the normalisation.

        Parameters
        ----------
        y : Tensor, shape (batch, dim), dimensionless

        Returns
        -------
        q : Tensor, shape (batch, dim), nm and radians
        ladj : Tensor, shape (batch,)
            ``+sum log std``.
        """
        check_flat(y, self.std.shape[0], "normalised coordinates")
        q = y * self.std.to(y.dtype) + self.mean.to(y.dtype) + self.offset.to(y.dtype)
        return q, self._log_scale(y)


def _sparsest_cut_offsets(q: Tensor, circular: Tensor, n_bins: int) -> Tensor:
    """Per circular dimension, the offset that puts the cut at the centre of the emptiest histogram bin."""
    offsets = torch.zeros(q.shape[1], dtype=torch.float64)
    edges = torch.linspace(-math.pi, math.pi, n_bins + 1, dtype=torch.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for d in circular.nonzero().flatten().tolist():
        angles = torch.remainder(q[:, d] + math.pi, 2 * math.pi) - math.pi
        counts = torch.histc(angles, bins=n_bins, min=-math.pi, max=math.pi)
        # circular smoothing over a quarter turn puts the cut in the middle of an empty stretch, not at its edge
        width = max(1, n_bins // 8)
        smoothed = sum(torch.roll(counts, k) for k in range(-width, width + 1))
        # the cut sits at offset + pi, so the offset is the sparsest centre rotated by pi
        offsets[d] = torch.remainder(centres[int(torch.argmin(smoothed))], 2 * math.pi) - math.pi
    return offsets
