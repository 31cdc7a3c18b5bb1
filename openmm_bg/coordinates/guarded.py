"""Cartesian <-> normalised internal coordinates with an explicit domain for sampling.

A flow's output covers all of R^d, but internal coordinates live in a box: bonds
are positive, angles lie in [0, pi], and each normalised torsion in [-1, 1), one
turn of its circle.  Wrapping a torsion that falls outside would give a
configuration two latent preimages and make its density wrong.  Instead, a latent
point whose image leaves the domain yields NaN positions: its energy is then
``+inf`` and its importance weight zero, which is exact, since the Boltzmann density
of the target, seen from the flow's space, vanishes outside the domain.

**The principal domain** is decided here, once, by :func:`principal_domain`; every
sampling path and every move uses it (through :func:`inverse_in_domain`).  A torsion
is in it when its normalised value lies in the half-open turn [-1, 1), i.e. the
radian value in ``[offset - pi, offset + pi)``, ``[-pi, pi)`` for a transform used
without normalisation.  That is exactly the image of ``forward``, which wraps into
[-pi, pi) before dividing by pi, so on it ``inverse`` undoes ``forward`` (x -> z -> x
and z -> x -> z), every configuration has one preimage, and the log-determinant is
that of the density :meth:`BoltzmannGenerator.log_prob` evaluates.  A closed check
such as ``|torsion| <= pi`` on radians is wrong twice: it admits both ends of the
turn (one configuration, two preimages), and once a normalisation rotates the cut
(``offset != 0``) it rejects part of the turn that ``forward`` does produce.  (A bare
transform's ``atan2`` may itself return +pi, the configuration that -pi describes: a set
of measure zero, so the half-open convention loses no probability.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..flows.base import Bijection, Inverse, Sequential, check_flat
from .normalization import InternalCoordinateNormalization
from .transform import InternalCoordinateTransform

__all__ = ["GuardedCoordinates", "CircularToReal", "principal_domain", "inverse_in_domain"]


def _in_turn(angles: Tensor, half_turn: float) -> Tensor:
    """Rows whose every periodic value lies in the half-open turn ``[-half_turn, half_turn)``."""
    return ((angles >= -half_turn) & (angles < half_turn)).all(dim=1)


def principal_domain(layer: Bijection, values: Tensor, turn: bool = True) -> Tensor:
    """THE domain check: rows of ``values`` that ``layer.inverse`` maps to a configuration exactly once.

    Parameters
    ----------
    layer : GuardedCoordinates, InternalCoordinateNormalization or InternalCoordinateTransform
    values : Tensor, shape (batch, dim)
        Input of ``layer.inverse``: normalised coordinates for the first two, internal
        coordinates (nm, radians) for the transform.
    turn : bool
        Check that the torsions of an :class:`InternalCoordinateTransform` lie in one
        turn, [-pi, pi).  ``False`` when a normalisation in front of it has already
        checked the turn on the normalised values (its cut may be rotated).

    Returns
    -------
    BoolTensor, shape (batch,)
        Finite rows whose periodic values lie in one turn (normalised [-1, 1)) and whose
        bonds and angles the transform accepts (see the module docstring).
    """
    if isinstance(layer, GuardedCoordinates):
        circular, half_turn, transform = layer.normalization.circular, 1.0, layer.transform
    elif isinstance(layer, InternalCoordinateNormalization):
        circular, half_turn, transform = layer.circular, 1.0, None
    elif isinstance(layer, InternalCoordinateTransform):
        circular, half_turn, transform = layer.circular, math.pi, layer
    else:
        raise TypeError(f"principal_domain needs a coordinate layer, got {type(layer).__name__}")
    check_flat(values, circular.shape[0], "coordinates")
    ok = torch.isfinite(values).all(dim=1)
    if turn or not isinstance(layer, InternalCoordinateTransform):
        ok &= _in_turn(values[:, circular], half_turn)
    if transform is None:
        return ok
    safe = torch.where(ok[:, None], values, torch.zeros_like(values))
    q = layer.normalization.inverse(safe)[0] if isinstance(layer, GuardedCoordinates) else safe
    return ok & transform.in_domain(q)


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
        Running count of latent points that ``inverse`` mapped to NaN: the one
        out-of-domain counter of the layer.  Every draw through a flow that holds it
        (:func:`inverse_in_domain`, hence sampling, the moves and exploration) passes
        here; the per-result counts (``GeneratorSample.n_out_of_domain``,
        ``SampleSet.n_out_of_domain``, a move's ``statistics``) are tallies of the same
        mask for one draw, one sample set or one move.
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
        ok = principal_domain(self, y)
        q, ladj_y = self.normalization.inverse(torch.where(ok[:, None], y, torch.zeros_like(y)))
        # the normalisation centre is always a valid configuration, so the transform never raises
        centre, _ = self.normalization.inverse(torch.zeros_like(y[:1]))
        return ok, torch.where(ok[:, None], q, centre), ladj_y

    def in_domain(self, y: Tensor) -> Tensor:
        """BoolTensor (batch,): normalised coordinates that :meth:`inverse` maps to a configuration
        (:func:`principal_domain`)."""
        return principal_domain(self, y)

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
        # -1 is the start of the half-open turn, where atanh is -inf: a torsion exactly at the cut (in
        # float32 about one value in 10^7) is taken at the nearest point inside, where the density is continuous
        yc = torch.where(yc == -1, torch.nextafter(yc, torch.zeros_like(yc)), yc)
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


def _inverse_marked(layer: Bijection, z: Tensor, turn: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """``layer.inverse`` on the whole batch, with the rows that left the domain marked False."""
    if isinstance(layer, Sequential):
        ladj, ok = z.new_zeros(z.shape[0]), torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        for sub in reversed(layer.layers):
            z, step, sub_ok = _inverse_marked(sub, z, turn)
            ladj, ok = ladj + step, ok & sub_ok
            # a normalisation has checked the turn on its normalised input; its output is rotated by the offset
            turn = not isinstance(sub, InternalCoordinateNormalization)
        return z, ladj, ok
    if isinstance(layer, Inverse):
        raise TypeError("inverse_in_domain cannot see inside an Inverse layer; compose layers with Sequential")
    ok = torch.isfinite(z.reshape(z.shape[0], -1)).all(dim=1)
    if isinstance(layer, (InternalCoordinateNormalization, InternalCoordinateTransform)):
        ok &= principal_domain(layer, z, turn)
        if isinstance(layer, InternalCoordinateTransform):
            if not ok.any():
                nan = torch.full((z.shape[0], layer.n_atoms, 3), float("nan"), dtype=z.dtype, device=z.device)
                return nan, torch.full_like(z[:, 0], float("nan")), ok
            # the transform raises outside its domain: invert a valid row in place of the others
            z = torch.where(ok[:, None], z, z[ok][:1])
    # GuardedCoordinates applies principal_domain itself, counts and returns NaN rows
    x, ladj = layer.inverse(z)
    ok = ok & torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1) & torch.isfinite(ladj)
    if isinstance(layer, CircularToReal):
        # tanh rounded to +-1: outside the open interval its forward (and so log_prob) accepts
        ok &= (x[:, layer.circular].abs() < 1).all(dim=1)
    return x, ladj, ok


def inverse_in_domain(flow: Bijection, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map latents through ``flow.inverse``, marking those outside the principal domain.

    Every layer is inverted on the whole batch, as ``flow.inverse`` does, so valid rows
    are bit for bit those of ``flow.inverse``.  The coordinate layers are checked with
    :func:`principal_domain`; rows that any layer maps to a non-finite value are marked
    too, and so are torsions that :class:`CircularToReal` rounds onto +-1 (its
    ``tanh`` saturates for ``|u| > 19`` in float64, ``> 9`` in float32), which its
    ``forward`` would refuse when the density of the configuration is evaluated.

    Parameters
    ----------
    flow : Bijection
        Configurations -> latents; nested :class:`Sequential` compositions are searched.
    z : Tensor, shape (n, latent_dim)

    Returns
    -------
    x : Tensor, shape (n, ...)
        ``flow.inverse(z)``; NaN in the rows not in the domain.
    ladj_zx : Tensor, shape (n,)
        ``log |det dx/dz|``; NaN in those rows.
    in_domain : BoolTensor, shape (n,)
    """
    x, ladj, ok = _inverse_marked(flow, z)
    x = torch.where(ok.reshape(-1, *[1] * (x.ndim - 1)), x, torch.full_like(x, float("nan")))
    return x, torch.where(ok, ladj, torch.full_like(ladj, float("nan"))), ok
