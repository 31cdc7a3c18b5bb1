"""Named collective variables of any protein or peptide, found in its topology with mdtraj.

:func:`standard_collective_variables` gives every peptide or protein the collective
variables one usually asks for, by name, so that a state such as ``"phi_ALA2 < 0"`` can
be written without looking up atom indices:

``phi_ALA2``, ``phi_2`` (and ``psi_...``)
    The backbone dihedrals of a residue (:func:`mdtraj.compute_phi`,
    :func:`mdtraj.compute_psi`), radians in (-pi, pi].  A residue is named by its residue
    name and its residue number as the structure file writes it (mdtraj's ``resSeq``,
    ``ALA2`` in alanine dipeptide), or by that number alone (``phi_2``).  A molecule with
    exactly one phi and one psi (alanine dipeptide) also has plain ``phi`` and ``psi``.
``chi1_TRP2``, ``chi1_2`` ... ``chi4_...``
    The side-chain dihedrals (:func:`mdtraj.compute_chi1` ...), radians.
``rg``
    Radius of gyration of the protein's atoms, unweighted (:func:`mdtraj.compute_rg`), nm.
``rmsd_ca``
    C-alpha RMSD to the reference structure after optimal superposition, nm (three or more
    C-alphas).
``q_native``
    Fraction of the reference structure's heavy-atom contacts of the protein
    (:func:`openmm_bg.molecules.collective_variables.native_contact_pairs`), in [0, 1].

``rmsd_ca`` and ``q_native`` need a reference structure (usually the system's initial
positions).  Residue numbers that repeat (several chains) get the chain as a suffix,
``phi_ALA2_B``.  Every collective variable is a picklable callable
``cv(positions (n_frames, n_atoms, 3) nm) -> ndarray (n_frames,)``;
:func:`describe_collective_variable` says what one is, for listings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import mdtraj as md
import numpy as np

from .collective_variables import RMSD, Coordinate, Dihedral, Distance, NativeContacts, as_trajectory, native_contact_pairs

__all__ = ["DIHEDRAL_KINDS", "RadiusOfGyration", "standard_collective_variables", "describe_collective_variable"]

#: the dihedral kinds named per residue -> the mdtraj function that finds their atoms
DIHEDRAL_KINDS: dict[str, Callable] = {
    "phi": md.compute_phi,
    "psi": md.compute_psi,
    "chi1": md.compute_chi1,
    "chi2": md.compute_chi2,
    "chi3": md.compute_chi3,
    "chi4": md.compute_chi4,
}


@dataclass(frozen=True)
class RadiusOfGyration:
    """Radius of gyration of selected atoms, unweighted; nm, shape ``(n_frames,)``."""

    topology: md.Topology = field(repr=False)
    atom_indices: tuple[int, ...]

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        traj = as_trajectory(positions, self.topology).atom_slice(list(self.atom_indices))
        return md.compute_rg(traj).astype(np.float64)


def _residue_names(kind: str, residue: md.core.topology.Residue, chain_suffix: str) -> list[str]:
    """``[kind_RESNAME12, kind_12]`` (with the chain suffix), keeping only valid identifiers."""
    names = [f"{kind}_{residue.name}{residue.resSeq}{chain_suffix}", f"{kind}_{residue.resSeq}{chain_suffix}"]
    names = [name for name in names if name.isidentifier()]
    return names or [f"{kind}_residue{residue.index}{chain_suffix}"]


def _chain_label(chain) -> str:
    label = str(getattr(chain, "chain_id", "") or "")
    return f"_{label}" if label.isidentifier() or label.isalnum() else f"_chain{chain.index}"


def _dihedrals(topology: md.Topology) -> dict[str, Dihedral]:
    empty = md.Trajectory(np.zeros((1, topology.n_atoms, 3)), topology)
    found: list[tuple[str, md.core.topology.Residue, tuple[int, int, int, int]]] = []
    for kind, finder in DIHEDRAL_KINDS.items():
        indices, _ = finder(empty)
        # the second atom (N for phi, CA for psi and chi1, CB for chi2 ...) lies in the residue the angle belongs to
        found += [(kind, topology.atom(int(atoms[1])).residue, tuple(int(a) for a in atoms)) for atoms in indices]
    # a residue number that repeats (several chains) would give one name twice: those names carry the chain
    repeated = {key for key, count in Counter((kind, r.resSeq) for kind, r, _ in found).items() if count > 1}
    cvs: dict[str, Dihedral] = {}
    for kind, residue, atoms in found:
        suffix = _chain_label(residue.chain) if (kind, residue.resSeq) in repeated else ""
        cv = Dihedral(topology, atoms)
        for name in _residue_names(kind, residue, suffix):
            cvs.setdefault(name, cv)
    phi = [atoms for kind, _, atoms in found if kind == "phi"]
    psi = [atoms for kind, _, atoms in found if kind == "psi"]
    if len(phi) == 1 and len(psi) == 1:
        cvs["phi"], cvs["psi"] = Dihedral(topology, phi[0]), Dihedral(topology, psi[0])
    return cvs


def standard_collective_variables(topology: md.Topology, reference_positions: np.ndarray | None = None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The named collective variables of a peptide or protein (see the module notes).

    Parameters
    ----------
    topology : mdtraj.Topology
    reference_positions : ndarray, shape (n_atoms, 3), nm, optional
        A reference structure (e.g. the system's initial positions); with it come
        ``rmsd_ca`` and ``q_native``.

    Returns
    -------
    dict of str to callable
        ``cv(positions (n_frames, n_atoms, 3) nm) -> ndarray (n_frames,)``, radians or nm;
        empty for a topology without protein residues.  The callables pickle.
    """
    if not isinstance(topology, md.Topology):
        raise TypeError(f"topology must be an mdtraj.Topology, got {type(topology).__name__}")
    reference = None
    if reference_positions is not None:
        reference = np.asarray(reference_positions, dtype=np.float64)
        if reference.shape != (topology.n_atoms, 3):
            raise ValueError(f"reference_positions must have shape ({topology.n_atoms}, 3) in nm, got {reference.shape}")
    cvs: dict[str, Callable[[np.ndarray], np.ndarray]] = dict(_dihedrals(topology))
    protein = tuple(int(a.index) for a in topology.atoms if a.residue.is_protein)
    if len(protein) >= 2:
        cvs["rg"] = RadiusOfGyration(topology, protein)
    if reference is None:
        return cvs
    ca = tuple(int(a.index) for a in topology.atoms if a.residue.is_protein and a.name == "CA")
    if len(ca) >= 3:
        cvs["rmsd_ca"] = RMSD(topology, reference, ca)
    pairs = native_contact_pairs(topology, reference, atom_indices=protein) if protein else np.zeros((0, 2), dtype=np.int64)
    if len(pairs):
        cvs["q_native"] = NativeContacts(topology, reference, pairs)
    return cvs


def describe_collective_variable(cv: Callable) -> tuple[str, str, str]:
    """What a collective variable is, for a listing: ``(kind, atoms, unit)``.

    Returns
    -------
    kind : str
        e.g. ``"dihedral"``, ``"rmsd"``; ``"function"`` for a callable of another type.
    atoms : str
        The atom indices (from 0), or how many atoms or pairs it uses; ``"-"`` if unknown.
    unit : str
        ``"radians"``, ``"nm"``, ``"fraction"``, or ``"-"`` if unknown.
    """
    if isinstance(cv, Dihedral):
        return "dihedral", ",".join(map(str, cv.atoms)), "radians"
    if isinstance(cv, Distance):
        return "distance", ",".join(map(str, cv.atoms)), "nm"
    if isinstance(cv, RMSD):
        return "rmsd", f"{len(cv.atom_indices)} atoms", "nm"
    if isinstance(cv, RadiusOfGyration):
        return "radius of gyration", f"{len(cv.atom_indices)} atoms", "nm"
    if isinstance(cv, NativeContacts):
        return "native contacts", f"{len(cv.pairs)} pairs", "fraction"
    if isinstance(cv, Coordinate):
        return "coordinate", f"{cv.atom} ({'xyz'[cv.axis]})", "nm"
    return "function", "-", "-"
