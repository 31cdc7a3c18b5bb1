"""A structure-based (Go-type) C-alpha model of a small protein as an OpenMM System.

The model is that of Clementi, Nymeyer & Onuchic, J. Mol. Biol. 298, 937 (2000): one bead
per residue at the C-alpha, and an energy whose global minimum is the native structure:

``V = sum_bonds K_r (r - r0)^2 + sum_angles K_theta (theta - theta0)^2``
``  + sum_dihedrals K_phi [1 - cos(phi - phi0)] + K_phi / 2 [1 - cos(3 (phi - phi0))]``
``  + sum_native eps [5 (sigma_ij / r)^12 - 6 (sigma_ij / r)^10]``
``  + sum_non-native eps (sigma_nn / r)^12``

with Clementi's constants ``K_r = 100 eps/A^2``, ``K_theta = 20 eps/rad^2``, ``K_phi = eps``,
``sigma_nn = 4 A``.  ``r0``, ``theta0``, ``phi0`` and ``sigma_ij`` are the native bond
lengths, angles, dihedrals and contact distances of the C-alpha trace.

Contact map
    Residues ``i < j`` with ``j - i >= 4`` form a native contact when any heavy atom of
    ``i`` lies within ``contact_cutoff`` (0.45 nm) of any heavy atom of ``j`` in the native
    structure.  Clementi et al. (2000) likewise derive the map from the heavy atoms of the
    native structure and leave out ``j - i <= 3``, whose geometry the bonds, angles and
    dihedrals already fix; the plain 4.5 A heavy-atom cutoff is that of Best, Hummer &
    Eaton, PNAS 110, 17874 (2013), which the package also uses for Q
    (:func:`~openmm_bg.molecules.collective_variables.native_contact_pairs`).  A C-alpha
    only structure falls back on C-alpha distances (``ca_contact_cutoff``, 0.65 nm).
    Every other pair with ``j - i >= 4`` is non-native and only repulsive; pairs with
    ``j - i <= 3`` interact through the bonded terms only, as in the original model.

Energy unit
    ``eps`` is in kJ/mol.  The default, :data:`DEFAULT_EPSILON`, is kT at 300 K, so that a
    temperature T in K is T / 300 in the model's reduced units ``k_B T / eps``.  The
    bundled trpzip2 hairpin (12 beads, 14 native contacts) then melts (half folded) near
    358 K and is about 73 % folded at 300 K (parallel tempering,
    ``benchmarks/results/go-model-reference``).  Its folding is only weakly cooperative:
    F(Q) has an unfolded basin near Q = 0.25, a folded one near Q = 0.9 to 1, and between
    them a flat region less than 1 kT high.

Fraction of native contacts Q
    The smooth Q of Best, Hummer & Eaton (2013) on the C-alpha pairs of the contact map,
    ``mean 1 / (1 + exp(beta (r - lambda sigma_ij)))`` with ``beta = 50 / nm`` and
    ``lambda = 1.5``, the tolerance they give for C-alpha models (1.8 is for heavy
    atoms).

Each term sits in its own force group (:data:`FORCE_GROUPS`), so its energy can be read
alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import mdtraj as md
import numpy as np
import openmm

from .._validation import ensure_count, ensure_positive
from ..units import MOLAR_GAS_CONSTANT
from .collective_variables import RMSD, fraction_native_contacts
from .named_cvs import RadiusOfGyration

__all__ = [
    "DEFAULT_EPSILON",
    "FORCE_GROUPS",
    "GO_STATES",
    "GoModel",
    "GoNativeContacts",
    "build_go_model",
    "CLEMENTI_CONSTANTS",
]

#: Clementi, Nymeyer & Onuchic (2000) constants, in units of eps and nm:
#: ``k_bond`` eps/nm^2 (100 eps/A^2), ``k_angle`` eps/rad^2, ``k_dihedral_1`` and
#: ``k_dihedral_3`` eps, ``sigma_nonnative`` nm (4 A).
CLEMENTI_CONSTANTS: dict[str, float] = {
    "k_bond": 100.0 * 100.0,
    "k_angle": 20.0,
    "k_dihedral_1": 1.0,
    "k_dihedral_3": 0.5,
    "sigma_nonnative": 0.4,
}

#: force group of each term of the energy
FORCE_GROUPS: dict[str, int] = {"bonds": 0, "angles": 1, "dihedrals": 2, "native": 3, "nonnative": 4}

#: eps in kJ/mol: kT at 300 K (R x 300 K), so that a temperature T in K is T / 300 in units of eps / k_B
DEFAULT_EPSILON: float = MOLAR_GAS_CONSTANT * 300.0

#: Folded and unfolded states of a Go model by its ``q_native``: one split, in the middle of the
#: flat barrier region of trpzip2's F(Q) (see the module notes), so that every configuration is in
#: one state and the fraction folded and dF(unfolded - folded) are one number
GO_STATES: dict[str, str] = {"folded": "q_native > 0.5", "unfolded": "q_native < 0.5"}

#: C-alpha to C-alpha distance above which consecutive residues count as a chain break, nm
#: (trans 0.38 nm, cis 0.29 nm)
MAX_CA_BOND = 0.43
#: fewest residues apart along the chain for a native or non-native contact
MIN_SEPARATION = 4
#: Q's switching steepness (1/nm) and tolerance on sigma_ij for a C-alpha model (Best, Hummer & Eaton 2013)
Q_BETA = 50.0
Q_TOLERANCE = 1.5


@dataclass(frozen=True)
class GoNativeContacts:
    """Fraction of native contacts Q of a C-alpha model; dimensionless, shape ``(n_frames,)``.

    Attributes
    ----------
    topology : mdtraj.Topology
        The C-alpha topology.
    reference : ndarray, shape (n_beads, 3), nm
        Native positions.
    pairs : int ndarray, shape (n_contacts, 2)
        Bead pairs of the native contacts.
    """

    topology: md.Topology = field(repr=False)
    reference: np.ndarray = field(repr=False)
    pairs: np.ndarray = field(repr=False)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return fraction_native_contacts(positions, self.topology, self.reference, self.pairs, beta=Q_BETA, tolerance=Q_TOLERANCE)


@dataclass
class GoModel:
    """A C-alpha structure-based model, ready to be wrapped in a ``MolecularSystem``.

    Attributes
    ----------
    system : openmm.System
        One particle per residue; terms in the force groups :data:`FORCE_GROUPS`; kJ/mol.
    topology : mdtraj.Topology
        One chain, one residue per bead (the native residue names), one atom ``CA`` per
        residue, consecutive beads bonded.
    positions : ndarray, shape (n_beads, 3), float64, nm
        The native C-alpha positions.
    epsilon : float, kJ/mol
    contacts : int ndarray, shape (n_contacts, 2)
        Bead pairs ``(i, j)``, ``i < j``, of the native contacts.
    sigma : ndarray, shape (n_contacts,), nm
        Native distance of each contact.
    nonnative : int ndarray, shape (n_nonnative, 2)
        Bead pairs with only the repulsive term.
    collective_variables : dict of str to callable
        ``q_native`` (:class:`GoNativeContacts`), ``rmsd_ca`` (nm, to the native) and
        ``rg`` (nm, unweighted radius of gyration).
    description : str
    """

    system: openmm.System
    topology: md.Topology
    positions: np.ndarray
    epsilon: float
    contacts: np.ndarray
    sigma: np.ndarray
    nonnative: np.ndarray
    collective_variables: dict[str, Callable[[np.ndarray], np.ndarray]]
    description: str = ""


def build_go_model(
    structure: str | os.PathLike | md.Trajectory,
    *,
    epsilon: float = DEFAULT_EPSILON,
    contact_cutoff: float = 0.45,
    ca_contact_cutoff: float = 0.65,
    bead_mass: float = 110.0,
    frame: int = 0,
) -> GoModel:
    """Build the C-alpha Go model of Clementi et al. (2000) from a native structure.

    Parameters
    ----------
    structure : path or mdtraj.Trajectory
        A single-chain protein with every residue present (a PDB file or anything
        :func:`mdtraj.load` reads alone).  Heavy atoms give the contact map when present.
    epsilon : float, kJ/mol
        The energy unit eps.  For trpzip2 the default puts the melting temperature near
        300 K; for another protein, find it first (``scripts/run_go_reference.py``).
    contact_cutoff : float, nm
        Heavy-atom distance below which two residues are in native contact.
    ca_contact_cutoff : float, nm
        The same for a structure that has only C-alpha atoms.
    bead_mass : float, Da
        The mass of every bead (about a mean residue).  Masses change the dynamics, not
        the equilibrium.
    frame : int
        The frame of ``structure`` taken as native.

    Returns
    -------
    GoModel

    Raises
    ------
    ValueError
        No C-alpha atoms, non-finite positions, more than one chain, a chain break
        (consecutive C-alphas more than 0.43 nm apart), or no native contact.
    """
    epsilon = ensure_positive(epsilon, "epsilon", "kJ/mol")
    contact_cutoff = ensure_positive(contact_cutoff, "contact_cutoff", "nm")
    ca_contact_cutoff = ensure_positive(ca_contact_cutoff, "ca_contact_cutoff", "nm")
    bead_mass = ensure_positive(bead_mass, "bead_mass", "Da")
    traj = _native_frame(structure, frame)
    ca = _alpha_carbons(traj)
    native = traj.xyz[0, ca].astype(np.float64)
    if not np.all(np.isfinite(native)):
        raise ValueError("the structure's C-alpha positions must be finite; got NaN or infinity")
    _check_chain(traj.topology, ca, native)
    topology = _ca_topology(traj.topology, ca)
    contacts = _native_contacts(traj, ca, contact_cutoff, ca_contact_cutoff)
    if len(contacts) == 0:
        raise ValueError(
            f"the structure has no native contact (residues at least {MIN_SEPARATION} apart within {contact_cutoff} nm); "
            "a Go model needs a folded structure of at least 5 residues"
        )
    sigma = np.linalg.norm(native[contacts[:, 1]] - native[contacts[:, 0]], axis=1)
    first, second = np.triu_indices(len(ca), k=MIN_SEPARATION)
    is_native = set(map(tuple, contacts.tolist()))
    nonnative = np.array([(i, j) for i, j in zip(first, second) if (i, j) not in is_native], dtype=np.int64).reshape(-1, 2)
    system = _go_system(native, contacts, sigma, nonnative, epsilon, bead_mass)
    cvs = {
        "q_native": GoNativeContacts(topology, native, contacts),
        "rmsd_ca": RMSD(topology, native, tuple(range(len(ca)))),
        "rg": RadiusOfGyration(topology, tuple(range(len(ca)))),
    }
    sequence = "".join(r.code or "X" for r in topology.residues)
    description = (
        f"C-alpha Go model (Clementi et al. 2000) of {sequence}: {len(ca)} beads, {len(contacts)} native contacts, "
        f"eps = {epsilon:g} kJ/mol"
    )
    return GoModel(system, topology, native, epsilon, contacts, sigma, nonnative, cvs, description)


def _native_frame(structure, frame: int) -> md.Trajectory:
    if isinstance(structure, md.Trajectory):
        traj = structure
    elif isinstance(structure, (str, os.PathLike)):
        traj = md.load(os.fspath(structure))
    else:
        raise TypeError(f"structure must be a path or an mdtraj.Trajectory, got {type(structure).__name__}")
    frame = ensure_count(frame, "frame", minimum=0)
    if frame >= traj.n_frames:
        raise ValueError(f"frame must lie in [0, {traj.n_frames}), got {frame}")
    return traj[frame]


def _alpha_carbons(traj: md.Trajectory) -> np.ndarray:
    ca = traj.topology.select("name CA and protein")
    if len(ca) == 0:
        raise ValueError("the structure has no C-alpha atom (no atom named CA in a protein residue); a Go model needs a protein")
    return ca


def _check_chain(topology: md.Topology, ca: np.ndarray, native: np.ndarray) -> None:
    chains = {topology.atom(int(i)).residue.chain.index for i in ca}
    if len(chains) != 1:
        raise ValueError(f"the structure has C-alpha atoms in {len(chains)} chains; a Go model here takes a single chain")
    bond = np.linalg.norm(np.diff(native, axis=0), axis=1)
    broken = np.flatnonzero(bond > MAX_CA_BOND)
    if len(broken):
        residues = ", ".join(f"{topology.atom(int(ca[k])).residue}-{topology.atom(int(ca[k + 1])).residue} ({bond[k]:.2f} nm)" for k in broken)
        raise ValueError(f"the chain is broken between residues {residues}: consecutive C-alphas must be under {MAX_CA_BOND} nm apart")


def _ca_topology(topology: md.Topology, ca: np.ndarray) -> md.Topology:
    top = md.Topology()
    chain = top.add_chain()
    atoms = []
    for i in ca:
        residue = topology.atom(int(i)).residue
        atoms.append(top.add_atom("CA", md.element.carbon, top.add_residue(residue.name, chain, resSeq=residue.resSeq)))
    for a, b in zip(atoms[:-1], atoms[1:]):
        top.add_bond(a, b)
    return top


def _native_contacts(traj: md.Trajectory, ca: np.ndarray, cutoff: float, ca_cutoff: float) -> np.ndarray:
    """Bead pairs ``(i, j)``, ``j - i >= MIN_SEPARATION``, in native contact (see the module notes)."""
    top = traj.topology
    bead_of_residue = {top.atom(int(a)).residue.index: k for k, a in enumerate(ca)}
    heavy = [a.index for a in top.atoms if a.residue.index in bead_of_residue and a.element is not None and a.element.symbol != "H"]
    if len(heavy) == len(ca):  # a C-alpha trace
        xyz, owner, cutoff = traj.xyz[0, ca].astype(np.float64), np.arange(len(ca)), ca_cutoff
    else:
        xyz = traj.xyz[0, heavy].astype(np.float64)
        owner = np.array([bead_of_residue[top.atom(a).residue.index] for a in heavy])
    close = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) < cutoff
    in_contact = np.zeros((len(ca), len(ca)), dtype=bool)
    rows, cols = np.nonzero(close)
    in_contact[owner[rows], owner[cols]] = True
    i, j = np.nonzero(np.triu(in_contact, k=MIN_SEPARATION))
    return np.stack([i, j], axis=1).astype(np.int64)


def _go_system(
    native: np.ndarray, contacts: np.ndarray, sigma: np.ndarray, nonnative: np.ndarray, epsilon: float, bead_mass: float
) -> openmm.System:
    c = CLEMENTI_CONSTANTS
    n = len(native)
    system = openmm.System()
    for _ in range(n):
        system.addParticle(bead_mass)

    # OpenMM's harmonic terms are k/2 (x - x0)^2; Clementi's are K (x - x0)^2.
    bonds = openmm.HarmonicBondForce()
    for i in range(n - 1):
        bonds.addBond(i, i + 1, float(np.linalg.norm(native[i + 1] - native[i])), 2.0 * c["k_bond"] * epsilon)
    angles = openmm.HarmonicAngleForce()
    for i in range(n - 2):
        angles.addAngle(i, i + 1, i + 2, _angle(native[i], native[i + 1], native[i + 2]), 2.0 * c["k_angle"] * epsilon)
    dihedrals = openmm.CustomTorsionForce("k1 * (1 - cos(theta - phi0)) + k3 * (1 - cos(3 * (theta - phi0)))")
    for name in ("k1", "k3", "phi0"):
        dihedrals.addPerTorsionParameter(name)
    for i in range(n - 3):
        phi0 = _dihedral(*native[i : i + 4])
        dihedrals.addTorsion(i, i + 1, i + 2, i + 3, [c["k_dihedral_1"] * epsilon, c["k_dihedral_3"] * epsilon, phi0])
    native_force = openmm.CustomBondForce("eps * (5 * (sigma / r)^12 - 6 * (sigma / r)^10)")
    native_force.addPerBondParameter("eps")
    native_force.addPerBondParameter("sigma")
    for (i, j), s in zip(contacts, sigma):
        native_force.addBond(int(i), int(j), [epsilon, float(s)])
    repulsive = openmm.CustomBondForce("eps * (sigma / r)^12")
    repulsive.addPerBondParameter("eps")
    repulsive.addPerBondParameter("sigma")
    for i, j in nonnative:
        repulsive.addBond(int(i), int(j), [epsilon, c["sigma_nonnative"]])

    for name, force in (("bonds", bonds), ("angles", angles), ("dihedrals", dihedrals), ("native", native_force), ("nonnative", repulsive)):
        force.setForceGroup(FORCE_GROUPS[name])
        system.addForce(force)
    return system


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    u, v = a - b, c - b
    return float(np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0)))


def _dihedral(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    """IUPAC dihedral a-b-c-d in (-pi, pi], as OpenMM measures it."""
    b1, b2, b3 = b - a, c - b, d - c
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    return float(np.arctan2(np.linalg.norm(b2) * (b1 @ n2), n1 @ n2))
