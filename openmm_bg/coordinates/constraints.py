"""Distance constraints read from an OpenMM ``System``, as plain numbers in nm."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

__all__ = ["constraints_from_system", "match_constraints", "particle_masses", "constraint_metric_log_det"]


def constraints_from_system(system: Any) -> dict[tuple[int, int], float]:
    """Read the distance constraints of an OpenMM ``System``.

    Parameters
    ----------
    system : openmm.System

    Returns
    -------
    constraints : dict
        Maps each constrained atom pair ``(i, j)`` with ``i < j`` to its
        distance in nm.  Empty for an unconstrained system.
    """
    import openmm
    from openmm import unit

    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
    constraints: dict[tuple[int, int], float] = {}
    for k in range(system.getNumConstraints()):
        i, j, distance = system.getConstraintParameters(k)
        pair = (min(i, j), max(i, j))
        constraints[pair] = float(distance.value_in_unit(unit.nanometer))
    return constraints


def particle_masses(system: Any) -> np.ndarray:
    """Masses of the particles of an OpenMM ``System``.

    Parameters
    ----------
    system : openmm.System

    Returns
    -------
    masses : numpy.ndarray, shape (n_particles,), float64, Da (g/mol)
    """
    import openmm
    from openmm import unit

    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def constraint_metric_log_det(x: Tensor, constrained_atoms: Tensor, masses: Tensor) -> Tensor:
    """Half the log-determinant of the constraint metric ``Z``, per configuration.

    ``Z_kl = sum_a (1/m_a) grad_a sigma_k . grad_a sigma_l`` for the bond
    constraints ``sigma_k = |x_i - x_j| - r_k``.  Rigid-constraint dynamics
    (SHAKE, RATTLE, OpenMM's constraints) samples ``exp(-u) delta(sigma)
    det(Z)^(1/2)``, whereas :class:`InternalCoordinateTransform` defines its
    densities against ``exp(-u) delta(sigma)``; add this value to a log
    importance weight to target the constrained-dynamics ensemble instead.

    Parameters
    ----------
    x : Tensor, shape (batch, n_atoms, 3), nm
    constrained_atoms : LongTensor, shape (n_constraints, 2)
        E.g. ``InternalCoordinateTransform.constrained_atoms``.
    masses : Tensor, shape (n_atoms,), Da
        E.g. from :func:`particle_masses`; must be positive for every
        constrained atom.

    Returns
    -------
    half_log_det : Tensor, shape (batch,)
        ``0.5 log det Z`` with ``Z`` in 1/Da; zeros without constraints.
    """
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape (batch, n_atoms, 3), got {tuple(x.shape)}")
    masses = torch.as_tensor(masses, dtype=x.dtype, device=x.device)
    if masses.shape != (x.shape[1],):
        raise ValueError(f"masses must have shape ({x.shape[1]},), got {tuple(masses.shape)}")
    constrained_atoms = torch.as_tensor(constrained_atoms, dtype=torch.long, device=x.device).reshape(-1, 2)
    if len(constrained_atoms) == 0:
        return x.new_zeros(x.shape[0])
    i, j = constrained_atoms.T
    if not (masses[constrained_atoms] > 0).all():
        raise ValueError("every constrained atom needs a positive mass")
    direction = x[:, i] - x[:, j]
    direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
    inverse_mass = 1.0 / masses
    # sigma_k pulls its first atom along +direction_k and its second along -direction_k; constraints couple through shared atoms
    coupling = (
        (i[:, None] == i[None, :]) * inverse_mass[i][:, None]
        + (j[:, None] == j[None, :]) * inverse_mass[j][:, None]
        - (i[:, None] == j[None, :]) * inverse_mass[i][:, None]
        - (j[:, None] == i[None, :]) * inverse_mass[j][:, None]
    )
    metric = coupling * (direction @ direction.transpose(1, 2))
    return 0.5 * torch.linalg.slogdet(metric)[1]


def match_constraints(zmatrix: np.ndarray, constraints: Mapping[tuple[int, int], float]) -> tuple[np.ndarray, np.ndarray]:
    """Find the z-matrix bond that each constraint fixes.

    Parameters
    ----------
    zmatrix : numpy.ndarray, shape (n_atoms, 4), int
        A validated z-matrix.
    constraints : mapping
        Atom pair ``(i, j)`` to distance in nm.

    Returns
    -------
    rows : numpy.ndarray, shape (n_constraints,), int64
        Z-matrix row (``>= 1``) whose bond each constraint fixes, sorted.
    lengths : numpy.ndarray, shape (n_constraints,), float64, nm

    Raises
    ------
    ValueError
        If a constrained pair is not a bond of the z-matrix (a constrained
        angle, say, or a ring-closing bond), if an index is out of range, or
        if a distance is not positive and finite.
    """
    n_atoms = zmatrix.shape[0]
    row_of_bond = {}
    for k in range(1, n_atoms):
        atom, partner = int(zmatrix[k, 0]), int(zmatrix[k, 1])
        row_of_bond[(min(atom, partner), max(atom, partner))] = k
    rows, lengths = [], []
    for (i, j), distance in constraints.items():
        i, j = int(i), int(j)
        if not (0 <= i < n_atoms and 0 <= j < n_atoms) or i == j:
            raise ValueError(f"constraint between atoms {i} and {j} does not name two distinct atoms of the {n_atoms}")
        if not np.isfinite(distance) or distance <= 0:
            raise ValueError(f"constraint between atoms {i} and {j} must have a positive distance in nm, got {distance}")
        pair = (min(i, j), max(i, j))
        if pair not in row_of_bond:
            raise ValueError(
                f"atoms {pair[0]} and {pair[1]} are constrained but are not a bond of the z-matrix, so the "
                "constraint cannot be held by removing one coordinate; only bond-length constraints along "
                "z-matrix bonds (such as HBonds) are supported"
            )
        rows.append(row_of_bond[pair])
        lengths.append(float(distance))
    order = np.argsort(rows)
    return np.asarray(rows, dtype=np.int64)[order], np.asarray(lengths, dtype=np.float64)[order]
