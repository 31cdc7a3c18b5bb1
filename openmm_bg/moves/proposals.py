"""Drawing configurations from a generator safely, and placing them in a molecule's frame.

Two details decide whether a Metropolis-Hastings move built on a generator is exact:

* **Domain.**  A RealNVP flow in front of an internal-coordinate layer can produce
  negative bonds, angles outside [0, pi], or torsions outside one turn.  The first
  two cannot be turned into positions at all.  The third can, but the resulting
  configuration is also reached from its wrapped torsion, so its true proposal
  density is a sum over periodic images, not :meth:`BoltzmannGenerator.log_prob`.
  :func:`inverse_with_domain` marks all three kinds as invalid with the one domain
  check, :func:`openmm_bg.coordinates.guarded.principal_domain` (normalised torsions
  in the half-open turn [-1, 1)); a move that rejects them samples exactly with the
  density that ``log_prob`` computes (the proposal is the generator restricted to
  the principal domain, the rest becomes "stay").
* **Frame.**  With the rigid body removed, a configuration comes out in a canonical
  pose.  :func:`place_in_frame` moves it, rigidly, into the pose of the current
  configuration (same first atom, same orientation of the first three z-matrix
  atoms), a deterministic and symmetric choice: the pose is never changed by the
  move, and the density ratio reduces to the internal-coordinate one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..coordinates import InternalCoordinateTransform
from ..coordinates.guarded import inverse_in_domain
from ..flows.base import Bijection
from ..generator.model import BoltzmannGenerator

__all__ = [
    "internal_coordinate_layers",
    "rigid_frame_atoms",
    "generator_dtype",
    "inverse_with_domain",
    "place_in_frame",
]


def internal_coordinate_layers(flow: Bijection) -> list[InternalCoordinateTransform]:
    """Every :class:`InternalCoordinateTransform` inside ``flow`` (searching nested compositions)."""
    found: list[InternalCoordinateTransform] = []
    for module in flow.modules():
        if isinstance(module, InternalCoordinateTransform):
            found.append(module)
    return found


def rigid_frame_atoms(generator: BoltzmannGenerator) -> tuple[int, int, int] | None:
    """The three atoms that fix the pose when the generator removes the rigid body, else ``None``.

    Returns
    -------
    tuple of int or None
        Indices of the first three z-matrix atoms (origin, polar axis, plane) of the
        internal-coordinate layer with ``remove_rigid_body=True``.
    """
    layers = internal_coordinate_layers(generator.flow)
    removed = [layer for layer in layers if layer.remove_rigid_body]
    if not removed:
        return None
    if len(layers) > 1:
        raise ValueError(f"a generator flow must hold at most one InternalCoordinateTransform, found {len(layers)}")
    atoms = removed[0].zmatrix[:3, 0].tolist()
    return int(atoms[0]), int(atoms[1]), int(atoms[2])


def generator_dtype(generator: BoltzmannGenerator) -> torch.dtype:
    """The floating dtype of the generator's parameters (float32 if it has none)."""
    for tensor in list(generator.parameters()) + list(generator.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def inverse_with_domain(generator: BoltzmannGenerator, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map latents to configurations, marking those that cannot be used exactly.

    :func:`~openmm_bg.coordinates.guarded.inverse_in_domain` on the generator's flow,
    shaped as the generator's configurations: the same domain check as every other
    sampling path.

    Parameters
    ----------
    generator : BoltzmannGenerator
    z : Tensor, shape (n, latent_dim)

    Returns
    -------
    x : Tensor, shape (n, *event_shape)
        Configurations (nm for molecules); NaN in invalid rows.
    ladj_zx : Tensor, shape (n,)
        ``log |det dx/dz|``; NaN in invalid rows.
    valid : BoolTensor, shape (n,)
        False where a layer produced a non-finite value or coordinates outside the
        principal domain (see the module docstring).
    """
    x, ladj, valid = inverse_in_domain(generator.flow, z)
    return x.reshape(z.shape[0], *generator.event_shape), ladj, valid


def _frames(x: np.ndarray, atoms: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    a, b, c = atoms
    axis = x[:, b] - x[:, a]
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    plane = x[:, c] - x[:, a]
    plane = plane - np.sum(plane * axis, axis=1, keepdims=True) * axis
    plane = plane / np.linalg.norm(plane, axis=1, keepdims=True)
    # columns (plane, axis x plane, axis) form a right-handed rotation: local -> lab
    rotation = np.stack([plane, np.cross(axis, plane), axis], axis=-1)
    return x[:, a], rotation


def place_in_frame(x: np.ndarray, reference: np.ndarray, atoms: tuple[int, int, int]) -> np.ndarray:
    """Move configurations rigidly into the pose of a reference configuration.

    Parameters
    ----------
    x : ndarray, shape (n, n_atoms, 3), float64, nm
    reference : ndarray, shape (n_atoms, 3) or (n, n_atoms, 3), float64, nm
    atoms : (int, int, int)
        Origin atom, axis atom and plane atom (the first three z-matrix atoms).

    Returns
    -------
    ndarray, shape (n, n_atoms, 3), float64, nm
        ``x`` rotated and translated so that its origin atom sits on the reference's,
        its origin->axis bond points along the reference's, and its plane atom lies in
        the reference's half-plane.  Internal coordinates are unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim == 2:
        reference = np.broadcast_to(reference, x.shape)
    if x.ndim != 3 or reference.shape != x.shape:
        raise ValueError(f"x must have shape (n, n_atoms, 3) and reference (n_atoms, 3) or the same shape, got {x.shape} and {reference.shape}")
    origin_x, rot_x = _frames(x, atoms)
    origin_ref, rot_ref = _frames(reference, atoms)
    local = np.einsum("nij,nai->naj", rot_x, x - origin_x[:, None])
    return origin_ref[:, None] + np.einsum("nij,naj->nai", rot_ref, local)
