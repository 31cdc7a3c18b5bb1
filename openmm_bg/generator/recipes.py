"""Generator recipes: functions that build an untrained generator from plain settings.

Checkpoints store the name of one of these functions and its keyword arguments
(see :func:`openmm_bg.generator.save_generator`), so every builder takes
``energy=None`` plus YAML-safe keywords, and builds the same architecture each time.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..coordinates import CircularToReal, GuardedCoordinates, InternalCoordinateNormalization, InternalCoordinateTransform
from .prior import NormalPrior
from ..energies.base import Energy
from ..flows import Flatten, Sequential, circular_spline, neural_spline, real_nvp
from .model import BoltzmannGenerator

__all__ = ["COUPLINGS", "realnvp_generator", "molecular_generator", "molecular_generator_from_data"]

#: the flows :func:`molecular_generator` can build
COUPLINGS = ("circular-spline", "spline", "affine")


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

    Layers, configuration -> latent: :class:`~openmm_bg.flows.Flatten`, then RealNVP.

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
    flow = Sequential(Flatten(event_shape), real_nvp(dim, n_blocks=n_blocks, hidden=tuple(hidden), scale_bound=scale_bound))
    generator = BoltzmannGenerator(NormalPrior(dim, sigma), flow, energy, event_shape=event_shape)
    return generator.double() if double else generator


def molecular_generator(
    energy: Energy | Callable[[Tensor], Tensor] | None = None,
    *,
    zmatrix: Sequence[Sequence[int]],
    constraints: Sequence[Sequence[float]] | None = None,
    remove_rigid_body: bool = True,
    n_blocks: int = 6,
    hidden: Sequence[int] = (128, 128),
    scale_bound: float = 2.0,
    permute: bool = True,
    sigma: float = 1.0,
    double: bool = True,
    coupling: str = "affine",
    n_bins: int = 8,
    spline_bound: float = 5.0,
) -> BoltzmannGenerator:
    """Internal coordinates, normalisation, a coupling flow and a Gaussian prior for one molecule.

    Layers, configuration -> latent: :class:`GuardedCoordinates` (internal coordinates,
    normalised; torsions to one turn [-1, 1)), then either

    * ``coupling="circular-spline"``: spline couplings that keep torsions on the circle
      (:func:`openmm_bg.flows.circular_spline`), with a prior uniform on the torsions;
    * ``coupling="affine"`` (RealNVP) or ``"spline"`` (a neural spline flow), after
      :class:`CircularToReal` has cut the torsions open onto R, with a Gaussian prior.

    The normalisation starts neutral; fit it with :func:`molecular_generator_from_data`
    or load it with the state dict of a checkpoint.

    Parameters
    ----------
    energy : Energy, callable or None
        Reduced energy on positions (batch, n_atoms, 3) nm.
    zmatrix : list of [atom, bond, angle, torsion]
        See :func:`openmm_bg.coordinates.validate_zmatrix`.
    constraints : list of [i, j, length_nm], optional
        Bonds held at fixed length.
    remove_rigid_body : bool
        Leave the six rigid-body coordinates out (right for energies invariant under
        rigid motion: vacuum and implicit solvent).
    n_blocks, hidden, scale_bound, permute
        See :func:`openmm_bg.flows.real_nvp`.
    sigma : float
        Prior width.
    double : bool
        Use float64.
    coupling : str
        ``"circular-spline"``, ``"spline"`` (rational-quadratic splines, which represent
        the several modes of a backbone torsion within one dimension) or ``"affine"``.
    n_bins, spline_bound
        Bins per spline and the interval ``[-spline_bound, spline_bound]`` the splines of
        non-periodic coordinates cover (see :func:`openmm_bg.flows.neural_spline`); used
        by the spline couplings.
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {list(COUPLINGS)}, got {coupling!r}")
    zm = np.asarray(zmatrix, dtype=np.int64)
    constraint_map = {(int(i), int(j)): float(length) for i, j, length in (constraints or [])}
    transform = InternalCoordinateTransform(zm, constraints=constraint_map, remove_rigid_body=remove_rigid_body)
    coordinates = GuardedCoordinates(transform, InternalCoordinateNormalization(transform.circular))
    if coupling == "circular-spline":
        flow = Sequential(coordinates, circular_spline(transform.dim, transform.circular, n_blocks=n_blocks, hidden=tuple(hidden), n_bins=n_bins, bound=spline_bound))
        prior = NormalPrior(transform.dim, sigma, circular=transform.circular)
    else:
        if coupling == "affine":
            couplings = real_nvp(transform.dim, n_blocks=n_blocks, hidden=tuple(hidden), scale_bound=scale_bound, permute=permute)
        else:
            couplings = neural_spline(transform.dim, n_blocks=n_blocks, hidden=tuple(hidden), n_bins=n_bins, bound=spline_bound, permute=permute)
        flow = Sequential(coordinates, CircularToReal(transform.circular), couplings)
        prior = NormalPrior(transform.dim, sigma)
    generator = BoltzmannGenerator(prior, flow, energy, event_shape=(transform.n_atoms, 3))
    return generator.double() if double else generator


def molecular_generator_from_data(
    topology,
    positions: Tensor | np.ndarray,
    energy: Energy | Callable[[Tensor], Tensor] | None = None,
    *,
    system=None,
    zmatrix: Sequence[Sequence[int]] | None = None,
    **architecture,
) -> tuple[BoltzmannGenerator, dict]:
    """Build a molecular generator and fit its normalisation on training positions.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
    positions : array, shape (n_frames, n_atoms, 3), nm
        Training configurations.
    energy : Energy, callable or None
    system : openmm.System, optional
        Its constraints are held fixed.
    zmatrix : optional
        Your own z-matrix; by default one is built from the topology.
    **architecture
        Keywords of :func:`molecular_generator` (``n_blocks``, ``hidden``, ...).

    Returns
    -------
    generator : BoltzmannGenerator
    builder_kwargs : dict
        Plain keywords that rebuild the architecture with :func:`molecular_generator`,
        for :func:`openmm_bg.generator.save_generator`.
    """
    remove_rigid_body = architecture.pop("remove_rigid_body", True)
    transform = InternalCoordinateTransform.from_topology(topology, system=system, zmatrix=zmatrix, remove_rigid_body=remove_rigid_body)
    constraints = [[int(i), int(j), float(length)] for (i, j), length in zip(transform.constrained_atoms.tolist(), transform.constrained_lengths.tolist())]
    kwargs = {"zmatrix": transform.zmatrix.tolist(), "constraints": constraints, "remove_rigid_body": remove_rigid_body, **architecture}
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    generator = molecular_generator(energy, **kwargs)
    x = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    if x.ndim != 3 or x.shape[1:] != (transform.n_atoms, 3):
        raise ValueError(f"positions must have shape (n_frames, {transform.n_atoms}, 3) in nm, got {tuple(x.shape)}")
    q, _ = transform.forward(x)
    coordinates = generator.flow[0]
    coordinates.normalization.load_state_dict(InternalCoordinateNormalization.fit(q, transform.circular).state_dict())
    return generator, kwargs
