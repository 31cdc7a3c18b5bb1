"""Stereocentres: which generated configurations have the other handedness.

A flow over internal coordinates can place the four substituents of a tetrahedral atom
in either handedness: the torsions that place them do not forbid the mirror image.  The
mirror image is another molecule (D- instead of L-alanine).  Most force fields give it
the same energy, so importance weights do not remove it, and MD never visits it: the
barrier is a broken bond.  :func:`inverted_fraction` finds such configurations.

A stereocentre here is an atom with four bonded neighbours of which no two are
terminal atoms of the same element (that excludes CH3, NH3+ and CH2 groups, whose
"inversion" only swaps identical atoms).  Its handedness is the sign of the signed
volume spanned by its first three neighbours (by index) seen from the atom.
"""

from __future__ import annotations

import numpy as np

from ..topology import as_topology

__all__ = ["stereocentres", "handedness", "inverted_fraction"]


def stereocentres(topology) -> np.ndarray:
    """The stereocentres of a topology.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology

    Returns
    -------
    int ndarray, shape (n_centres, 4)
        Each row: the centre atom and its first three neighbours by index.
    """
    top = as_topology(topology)
    neighbours: dict[int, list] = {atom.index: [] for atom in top.atoms}
    for a, b in top.bonds:
        neighbours[a.index].append(b)
        neighbours[b.index].append(a)
    rows = []
    for atom in top.atoms:
        bonded = sorted(neighbours[atom.index], key=lambda x: x.index)
        if len(bonded) != 4:
            continue
        terminal = [x.element.symbol for x in bonded if len(neighbours[x.index]) == 1]
        if len(terminal) != len(set(terminal)):
            continue
        rows.append([atom.index] + [x.index for x in bonded[:3]])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def handedness(positions: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Sign (+1 or -1) of each centre's signed volume in each frame.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3), nm
    centres : int ndarray, shape (n_centres, 4), from :func:`stereocentres`

    Returns
    -------
    int8 ndarray, shape (n_frames, n_centres)
    """
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"positions must have shape (n_frames, n_atoms, 3), got {x.shape}")
    c = x[:, centres[:, 0]]
    a, b, d = (x[:, centres[:, k]] - c for k in (1, 2, 3))
    return np.sign(np.einsum("fci,fci->fc", a, np.cross(b, d))).astype(np.int8)


def inverted_fraction(positions: np.ndarray, topology, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """Fraction of frames with at least one stereocentre of the other handedness than ``reference``.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3), nm
    topology : mdtraj.Topology or openmm.app.Topology
    reference : ndarray, shape (n_atoms, 3), nm
        A structure of the intended stereoisomer (the starting structure).

    Returns
    -------
    fraction : float
        0 for a molecule without stereocentres.
    inverted : bool ndarray, shape (n_frames,)
    """
    centres = stereocentres(topology)
    n = np.asarray(positions).shape[0]
    if not len(centres) or n == 0:
        return 0.0, np.zeros(n, dtype=bool)
    wanted = handedness(np.asarray(reference)[None], centres)[0]
    inverted = (handedness(positions, centres) != wanted).any(axis=1)
    return float(inverted.mean()), inverted
