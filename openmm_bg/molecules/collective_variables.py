"""Collective variables on plain position arrays, computed with mdtraj.

Every function takes positions as a numpy array of shape ``(n_frames, n_atoms, 3)``
(or ``(n_atoms, 3)`` for one frame) in nm, with the topology they belong to, and
returns a numpy array.  Angles are in radians in ``(-pi, pi]``, distances in nm.

The small callable classes bind a topology (and a reference structure) to a
collective variable, so that a system can carry ``cv(positions) -> (n_frames,)``;
they pickle, so they can travel to worker processes.  :func:`parse_collective_variable`
makes one from a short text (``"chi=dihedral:4,6,8,14"`` in radians, ``"d=distance:0,5"``
in nm), as ``openmm-bg free-energy --cv`` takes it.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

import mdtraj as md
import numpy as np

from .expressions import CONSTANTS

__all__ = [
    "as_trajectory",
    "dihedrals",
    "backbone_dihedral_indices",
    "distances",
    "rmsd",
    "native_contact_pairs",
    "fraction_native_contacts",
    "Dihedral",
    "Distance",
    "RMSD",
    "NativeContacts",
    "Coordinate",
    "CV_KINDS",
    "CV_SPEC_FORMS",
    "parse_collective_variable",
]


def as_trajectory(
    positions: np.ndarray, topology: md.Topology, box_lengths: np.ndarray | None = None
) -> md.Trajectory:
    """Wrap a position array into an mdtraj trajectory, checking its shape.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
    topology : mdtraj.Topology
        Must have ``n_atoms`` atoms.
    box_lengths : ndarray, shape (3,), nm, optional
        Edges of an orthorhombic periodic box, the same for every frame.

    Returns
    -------
    mdtraj.Trajectory
        With float32 coordinates, as mdtraj stores them.
    """
    if not isinstance(topology, md.Topology):
        raise TypeError(f"topology must be an mdtraj.Topology, got {type(topology).__name__}")
    xyz = np.asarray(positions, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"positions must have shape (n_frames, n_atoms, 3) or (n_atoms, 3), got {np.shape(positions)}")
    if xyz.shape[1] != topology.n_atoms:
        raise ValueError(f"positions have {xyz.shape[1]} atoms but the topology has {topology.n_atoms} atoms")
    traj = md.Trajectory(xyz, topology)
    if box_lengths is not None:
        lengths = np.broadcast_to(np.asarray(box_lengths, dtype=np.float64), (len(xyz), 3))
        traj.unitcell_lengths = lengths.copy()
        traj.unitcell_angles = np.full((len(xyz), 3), 90.0)
    return traj


def dihedrals(positions: np.ndarray, topology: md.Topology, indices: np.ndarray) -> np.ndarray:
    """Dihedral angles.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
    topology : mdtraj.Topology
    indices : int ndarray, shape (n_dihedrals, 4)
        Atom quadruplets.

    Returns
    -------
    ndarray, shape (n_frames, n_dihedrals), float64, radians in (-pi, pi]
    """
    indices = _index_array(indices, 4, topology.n_atoms)
    traj = as_trajectory(positions, topology)
    return md.compute_dihedrals(traj, indices, periodic=False).astype(np.float64)


def backbone_dihedral_indices(topology: md.Topology, kind: str) -> np.ndarray:
    """Atom quadruplets of the backbone dihedrals ``phi`` (C-N-CA-C) or ``psi`` (N-CA-C-N).

    Returns
    -------
    int ndarray, shape (n_dihedrals, 4)
    """
    finders = {"phi": md.compute_phi, "psi": md.compute_psi}
    if kind not in finders:
        raise ValueError(f"kind must be one of {sorted(finders)}, got {kind!r}")
    empty = md.Trajectory(np.zeros((1, topology.n_atoms, 3)), topology)
    indices, _ = finders[kind](empty)
    if len(indices) == 0:
        raise ValueError(f"the topology has no backbone {kind} dihedral (atoms C-N-CA-C of consecutive residues)")
    return np.asarray(indices, dtype=np.int64)


def distances(
    positions: np.ndarray,
    topology: md.Topology,
    pairs: np.ndarray,
    box_lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Interatomic distances, with the minimum-image convention when a box is given.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
    topology : mdtraj.Topology
    pairs : int ndarray, shape (n_pairs, 2)
    box_lengths : ndarray, shape (3,), nm, optional
        Orthorhombic periodic box.

    Returns
    -------
    ndarray, shape (n_frames, n_pairs), float64, nm
    """
    pairs = _index_array(pairs, 2, topology.n_atoms)
    traj = as_trajectory(positions, topology, box_lengths)
    return md.compute_distances(traj, pairs, periodic=box_lengths is not None).astype(np.float64)


def rmsd(
    positions: np.ndarray,
    topology: md.Topology,
    reference: np.ndarray,
    atom_indices: np.ndarray | None = None,
) -> np.ndarray:
    """Root-mean-square deviation after optimal superposition on the selected atoms.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
    topology : mdtraj.Topology
    reference : ndarray, shape (n_atoms, 3), nm
    atom_indices : int ndarray, shape (n_selected,), optional
        Atoms used for both the superposition and the deviation; all atoms by default.

    Returns
    -------
    ndarray, shape (n_frames,), float64, nm
    """
    traj = as_trajectory(positions, topology)
    ref = as_trajectory(reference, topology)
    if ref.n_frames != 1:
        raise ValueError(f"reference must be one structure of shape ({topology.n_atoms}, 3), got {np.shape(reference)}")
    if atom_indices is not None:
        atom_indices = _index_array(atom_indices, None, topology.n_atoms)
    return md.rmsd(traj, ref, 0, atom_indices=atom_indices).astype(np.float64)


def native_contact_pairs(
    topology: md.Topology,
    reference: np.ndarray,
    cutoff: float = 0.45,
    min_residue_separation: int = 4,
    atom_indices: Iterable[int] | None = None,
) -> np.ndarray:
    """Heavy-atom pairs in contact in a reference structure (Best, Hummer and Eaton 2013).

    Parameters
    ----------
    topology : mdtraj.Topology
    reference : ndarray, shape (n_atoms, 3), nm
    cutoff : float, nm
        A pair is native when its reference distance is below this.
    min_residue_separation : int
        Pairs in residues closer than this along the chain are ignored.
    atom_indices : iterable of int, optional
        Only the heavy atoms among these (e.g. the protein's, leaving out the solvent);
        all atoms by default.

    Returns
    -------
    int ndarray, shape (n_contacts, 2)
    """
    chosen = range(topology.n_atoms) if atom_indices is None else _index_array(np.asarray(list(atom_indices), dtype=np.int64), None, topology.n_atoms)
    atoms = [topology.atom(int(i)) for i in chosen]
    heavy = np.array([a.index for a in atoms if a.element is not None and a.element.symbol != "H"], dtype=np.int64)
    residue = np.array([topology.atom(int(i)).residue.index for i in heavy], dtype=np.int64)
    first, second = np.triu_indices(len(heavy), k=1)
    apart = np.abs(residue[first] - residue[second]) >= min_residue_separation
    pairs = np.stack([heavy[first[apart]], heavy[second[apart]]], axis=1).reshape(-1, 2)
    if len(pairs) == 0:
        return pairs
    d0 = distances(reference, topology, pairs)[0]
    return pairs[d0 < cutoff]


def fraction_native_contacts(
    positions: np.ndarray,
    topology: md.Topology,
    reference: np.ndarray,
    pairs: np.ndarray,
    beta: float = 50.0,
    tolerance: float = 1.8,
) -> np.ndarray:
    """Fraction of native contacts Q, smoothed as in Best, Hummer and Eaton (2013).

    ``Q = mean over pairs of 1 / (1 + exp(beta * (r - tolerance * r0)))``.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm
    topology : mdtraj.Topology
    reference : ndarray, shape (n_atoms, 3), nm
        Native structure; gives the reference distances ``r0``.
    pairs : int ndarray, shape (n_contacts, 2)
        Native pairs, e.g. from :func:`native_contact_pairs`.
    beta : float, 1/nm
    tolerance : float
        Dimensionless factor on the native distance.

    Returns
    -------
    ndarray, shape (n_frames,), float64, in [0, 1]
    """
    pairs = _index_array(pairs, 2, topology.n_atoms)
    if len(pairs) == 0:
        raise ValueError("no native contact pairs given")
    r = distances(positions, topology, pairs)
    r0 = distances(reference, topology, pairs)[0]
    return np.mean(1.0 / (1.0 + np.exp(beta * (r - tolerance * r0))), axis=1)


def _index_array(indices: np.ndarray, width: int | None, n_atoms: int) -> np.ndarray:
    arr = np.asarray(indices)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"atom indices must be integers, got dtype {arr.dtype}")
    if width is not None and (arr.ndim != 2 or arr.shape[1] != width):
        raise ValueError(f"atom indices must have shape (n, {width}), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_atoms):
        raise ValueError(f"atom indices must lie in [0, {n_atoms}), got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


# --- callables bound to a topology, for system definitions ---------------------------------


@dataclass(frozen=True)
class Dihedral:
    """One dihedral angle as a function of positions; radians, shape ``(n_frames,)``."""

    topology: md.Topology = field(repr=False)
    atoms: tuple[int, int, int, int]

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return dihedrals(positions, self.topology, np.array([self.atoms]))[:, 0]


@dataclass(frozen=True)
class Distance:
    """One interatomic distance (minimum image if ``box_lengths``); nm, shape ``(n_frames,)``."""

    topology: md.Topology = field(repr=False)
    atoms: tuple[int, int]
    box_lengths: tuple[float, float, float] | None = None

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        box = None if self.box_lengths is None else np.array(self.box_lengths)
        return distances(positions, self.topology, np.array([self.atoms]), box)[:, 0]


@dataclass(frozen=True)
class RMSD:
    """RMSD to a reference on selected atoms; nm, shape ``(n_frames,)``."""

    topology: md.Topology = field(repr=False)
    reference: np.ndarray = field(repr=False)
    atom_indices: tuple[int, ...]

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return rmsd(positions, self.topology, self.reference, np.array(self.atom_indices))


@dataclass(frozen=True)
class NativeContacts:
    """Fraction of native contacts Q; dimensionless, shape ``(n_frames,)``."""

    topology: md.Topology = field(repr=False)
    reference: np.ndarray = field(repr=False)
    pairs: np.ndarray = field(repr=False)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return fraction_native_contacts(positions, self.topology, self.reference, self.pairs)


@dataclass(frozen=True)
class Coordinate:
    """One Cartesian coordinate (``axis`` 0, 1, 2) of one atom; nm, shape ``(n_frames,)``."""

    atom: int
    axis: int

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        xyz = np.asarray(positions, dtype=np.float64)
        return (xyz[None] if xyz.ndim == 2 else xyz)[:, self.atom, self.axis]


# --- collective variables from text ---------------------------------------------------------

#: kinds of collective variable :func:`parse_collective_variable` builds -> (number of atoms, unit)
CV_KINDS: dict[str, tuple[int, str]] = {"dihedral": (4, "radians"), "distance": (2, "nm")}
#: the accepted forms, e.g. ``"NAME=dihedral:i,j,k,l"``, for messages
CV_SPEC_FORMS: tuple[str, ...] = tuple(f"NAME={kind}:{','.join('ijkl'[:n])}" for kind, (n, _) in CV_KINDS.items())

_CV_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")
#: one atom index as written: ASCII digits (``int`` alone would also take "1_4", "+4" or "١٤")
_ATOM_INDEX = re.compile(r"-?[0-9]+")


def parse_collective_variable(
    spec: str,
    topology,
    *,
    box_lengths: np.ndarray | None = None,
    reserved: Iterable[str] = (),
) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A collective variable from a short text ``NAME=KIND:i,j[,k,l]``.

    Kinds (atom indices count from 0, in the topology's order):

    ``dihedral:i,j,k,l``
        The dihedral angle of four atoms, radians in (-pi, pi]
        (:class:`openmm_bg.collective_variables.Dihedral`).
    ``distance:i,j``
        The distance of two atoms, nm, minimum image when ``box_lengths`` is given
        (:class:`openmm_bg.collective_variables.Distance`).

    Parameters
    ----------
    spec : str
        e.g. ``"chi=dihedral:4,6,8,14"`` or ``"d=distance:0,5"``.
    topology : mdtraj.Topology
    box_lengths : array, shape (3,), nm, optional
        Orthorhombic periodic box for distances.
    reserved : iterable of str
        Names already taken (e.g. the system's own collective variables).

    Returns
    -------
    name : str
    cv : callable
        ``cv(positions (n_frames, n_atoms, 3) nm) -> ndarray (n_frames,)``.
    """
    kinds = ", ".join(CV_SPEC_FORMS)
    match = _CV_SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"collective variable {spec!r} is not of the form {kinds} (e.g. 'chi=dihedral:4,6,8,14')")
    name, kind, atoms_text = match.group(1), match.group(2).lower(), match.group(3)
    if keyword.iskeyword(name) or name in CONSTANTS:
        raise ValueError(f"collective variable {spec!r}: {name!r} is reserved; choose another name")
    if name in set(reserved):
        raise ValueError(f"collective variable {spec!r}: {name!r} is already defined; choose another name")
    if kind not in CV_KINDS:
        raise ValueError(f"collective variable {spec!r}: unknown kind {kind!r}; known kinds: {', '.join(CV_KINDS)}")
    n_atoms_needed = CV_KINDS[kind][0]
    words = [a.strip() for a in atoms_text.split(",")]
    if not all(_ATOM_INDEX.fullmatch(a) for a in words):
        raise ValueError(f"collective variable {spec!r}: atom indices must be integers (digits 0-9) separated by commas, got {atoms_text!r}")
    try:
        atoms = tuple(int(a) for a in words)
    except ValueError:  # more digits than Python converts
        raise ValueError(f"collective variable {spec!r}: atom index too long, got {atoms_text!r}") from None
    if len(atoms) != n_atoms_needed:
        raise ValueError(f"collective variable {spec!r}: a {kind} takes {n_atoms_needed} atom indices, got {len(atoms)}")
    n_atoms = topology.n_atoms
    if any(a < 0 or a >= n_atoms for a in atoms):
        raise ValueError(f"collective variable {spec!r}: atom indices must lie in [0, {n_atoms}) for this topology of {n_atoms} atoms")
    if len(set(atoms)) != len(atoms):
        raise ValueError(f"collective variable {spec!r}: atom indices must be distinct")
    if kind == "dihedral":
        return name, Dihedral(topology, atoms)
    box = None if box_lengths is None else tuple(float(x) for x in np.asarray(box_lengths).reshape(3))
    return name, Distance(topology, atoms, box)
