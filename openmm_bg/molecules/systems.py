"""Ready-made molecular systems and a loader for the user's own.

A :class:`MolecularSystem` bundles what the rest of the package needs: the OpenMM
``System``, the topology (mdtraj and openmm.app), initial positions in nm, the
temperature in K, the recommended OpenMM platform, and the standard collective
variables and metastable states, as plain functions of a position array of shape
``(n_frames, n_atoms, 3)`` in nm.  The built-in states are defined as text, once, in
:data:`openmm_bg.molecules.states.BUILTIN_STATES`.

Named systems (:func:`list_systems`):

``ala2-vacuum``, ``ala2-implicit``
    Alanine dipeptide (ACE-ALA-NME, 22 atoms, amber ff96 from openmmtools, in vacuum
    or with OBC implicit solvent), built without constraints so that every atom moves
    freely.  Atom order as in openmmtools.  CVs ``phi`` (C-N-CA-C) and ``psi``
    (N-CA-C-N) in radians; states ``phi_negative`` (phi < 0: C7eq, beta, alpha_R) and
    ``phi_positive`` (phi > 0: C7ax, alpha_L).
``dimer-wca``
    A bistable dimer (particles 0 and 1) in a periodic bath of 214 WCA particles
    (openmmtools ``DoubleWellDimer_WCAFluid`` at its documented reduced density 0.96)
    at 98.88 K (kT = 0.824 epsilon, where openmmtools' barrier is 6 kT).  The dimer
    starts closed in a relaxed bath.  CV ``dimer_distance`` (minimum image, nm);
    states ``closed`` (r < r0 + w) and ``open`` (r > r0 + w), split at the barrier top.
``trpzip2-implicit``
    The 12-residue tryptophan zipper 2 (SWTWENGKWTWK-NH2, first NMR model of 1LE1 as
    bundled by openmmtools, water and ions removed), amber14 with GBn2 implicit
    solvent, no constraints.  CVs ``rmsd_ca`` (C-alpha RMSD to the bundled folded
    structure, nm) and ``q_native`` (fraction of native heavy-atom contacts);
    states ``folded`` (rmsd_ca < 0.2 nm) and ``unfolded`` (rmsd_ca > 0.4 nm).
``trpzip2-go``
    A C-alpha structure-based (Go) model of the same trpzip2 structure,
    :mod:`openmm_bg.molecules.go_model` (Clementi, Nymeyer & Onuchic 2000): 12 beads, 14
    native contacts with the 12-10 form, eps = kT at 300 K.  About 73 % folded at 300 K,
    melting near 358 K.  CVs ``q_native`` (C-alpha fraction of native contacts), ``rmsd_ca``
    and ``rg``; states ``folded`` (q_native > 0.5) and ``unfolded`` (q_native < 0.5).
``particle-dimer``
    The two-dimensional bistable dimer (particles 0 and 1) among 36 repulsive solvent
    particles of Noé, Olsson, Köhler & Wu (2019), :mod:`openmm_bg.energies.particle_dimer`:
    reduced energy ``u(x, y) + sum z^2 / 2`` at 300 K with ``u`` the model's energy in kT of
    the in-plane positions in nm.  The dimer starts closed in a relaxed lattice of solvent.
    CV ``dimer_distance`` (in the plane, nm); states ``closed`` and ``open``, split at the
    barrier top of the dimer bond, d = 1.4950 nm.
``double-well``, ``mueller-brown``
    One particle in the analytic toy potentials of :mod:`openmm_bg.energies.toys`,
    as OpenMM systems from :mod:`openmm_bg.energies.toy_systems`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import mdtraj as md
import numpy as np
import openmm
import openmm.app as app

from ..reference.bundled import DATA_DIR
from ..units import box_vectors_nm, kt_kjmol, positions_nm
from .collective_variables import RMSD, Coordinate, Dihedral, Distance, NativeContacts, backbone_dihedral_indices, native_contact_pairs
from .states import MUELLER_BROWN_MINIMA, builtin_states

__all__ = ["MolecularSystem", "get_system", "list_systems"]


CollectiveVariable = Callable[[np.ndarray], np.ndarray]


@dataclass
class MolecularSystem:
    """A system ready for simulation and for training a Boltzmann generator.

    Attributes
    ----------
    name : str
    system : openmm.System
    topology : mdtraj.Topology
    openmm_topology : openmm.app.Topology
    positions : ndarray, shape (n_atoms, 3), float64, nm
        Initial positions.
    temperature : float, K
    platform : str
        Recommended OpenMM platform name (the fastest measured for this size).
    collective_variables : dict of str to callable
        ``cv(positions (n_frames, n_atoms, 3) nm) -> ndarray (n_frames,)``.
    states : dict of str to callable
        ``state(positions (n_frames, n_atoms, 3) nm) -> bool ndarray (n_frames,)``.
    description : str
    box_vectors : ndarray, shape (3, 3), nm, or None
        Periodic box, or None for a non-periodic system.
    """

    name: str
    system: openmm.System
    topology: md.Topology
    openmm_topology: app.Topology
    positions: np.ndarray
    temperature: float
    platform: str
    collective_variables: dict[str, CollectiveVariable] = field(default_factory=dict)
    states: dict[str, CollectiveVariable] = field(default_factory=dict)
    description: str = ""
    box_vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64)
        n = self.system.getNumParticles()
        if self.positions.shape != (n, 3):
            raise ValueError(f"{self.name}: positions have shape {self.positions.shape}, the System has {n} particles")
        if self.topology.n_atoms != n:
            raise ValueError(f"{self.name}: the topology has {self.topology.n_atoms} atoms, the System has {n} particles")

    @property
    def n_atoms(self) -> int:
        """Number of atoms (particles of the System)."""
        return self.system.getNumParticles()

    @property
    def kT(self) -> float:
        """Thermal energy at :attr:`temperature`, kJ/mol."""
        return kt_kjmol(self.temperature)

    def reduced_potential(self, positions: np.ndarray) -> np.ndarray:
        """Reduced potential energy ``U(x) / kT`` of each frame, on the recommended platform.

        Parameters
        ----------
        positions : ndarray, shape (n_frames, n_atoms, 3) or (n_atoms, 3), nm

        Returns
        -------
        ndarray, shape (n_frames,), float64, kT; ``+inf`` for a frame OpenMM cannot evaluate.
        """
        from ..energies.openmm_bridge import reduced_energies  # here, not at the top: workers unpickling CVs need no torch

        return reduced_energies(self.system, self.temperature, positions, platform=self.platform, box_vectors=self.box_vectors)


# --- registry -------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[], MolecularSystem]] = {}


def _register(name: str) -> Callable[[Callable[[], MolecularSystem]], Callable[[], MolecularSystem]]:
    def decorate(builder: Callable[[], MolecularSystem]) -> Callable[[], MolecularSystem]:
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_systems() -> list[str]:
    """Names of the ready-made systems, sorted."""
    return sorted(_BUILDERS)


def get_system(name: str) -> MolecularSystem:
    """Build a ready-made system by name (no network, no files outside the package).

    Parameters
    ----------
    name : str
        One of :func:`list_systems`.

    Returns
    -------
    MolecularSystem
        A freshly built instance; callers may modify it.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown system {name!r}; known systems: {', '.join(list_systems())}")
    return _BUILDERS[name]()


def _ala2(testsystem, name: str, platform: str, solvent: str) -> MolecularSystem:
    top = md.Topology.from_openmm(testsystem.topology)
    phi = tuple(int(i) for i in backbone_dihedral_indices(top, "phi")[0])
    psi = tuple(int(i) for i in backbone_dihedral_indices(top, "psi")[0])
    cvs = {"phi": Dihedral(top, phi), "psi": Dihedral(top, psi)}
    return MolecularSystem(
        name=name,
        system=testsystem.system,
        topology=top,
        openmm_topology=testsystem.topology,
        positions=positions_nm(testsystem.positions),
        temperature=300.0,
        platform=platform,
        collective_variables=cvs,
        states=builtin_states(name, cvs),
        description=f"alanine dipeptide, amber ff96, {solvent}, no constraints, 300 K",
    )


@_register("ala2-vacuum")
def _ala2_vacuum() -> MolecularSystem:
    from openmmtools.testsystems import AlanineDipeptideVacuum

    return _ala2(AlanineDipeptideVacuum(constraints=None), "ala2-vacuum", "Reference", "vacuum")


@_register("ala2-implicit")
def _ala2_implicit() -> MolecularSystem:
    from openmmtools.testsystems import AlanineDipeptideImplicit

    return _ala2(AlanineDipeptideImplicit(constraints=None), "ala2-implicit", "CPU", "OBC implicit solvent")


# The WCA-bath dimer of Noé, Olsson, Köhler & Wu, Science 365, eaaw1147 (2019), in openmmtools'
# parameters: sigma = 3.4 A, epsilon = 120 K kB, reduced density 0.96, and a barrier h = 6 kT at
# kT = 0.824 epsilon.  Its states split at r0 + w (BUILTIN_STATES in states.py).
_WCA_SIGMA = 0.34  # nm
_WCA_REDUCED_DENSITY = 0.96
_WCA_TEMPERATURE = 0.824 * 120.0  # K


@_register("dimer-wca")
def _dimer_wca() -> MolecularSystem:
    from openmmtools.testsystems import DoubleWellDimer_WCAFluid

    # openmmtools 0.27 documents `density` as N sigma^3 / V but divides N by it directly (per nm^3),
    # which gives a dilute gas; pass the number density that the documented value means.
    testsystem = DoubleWellDimer_WCAFluid(density=_WCA_REDUCED_DENSITY / _WCA_SIGMA**3)
    bond = next(f for f in testsystem.system.getForces() if isinstance(f, openmm.CustomBondForce))
    i, j, (h, r0, w) = bond.getBondParameters(0)
    box = box_vectors_nm(testsystem.system)
    positions = _closed_dimer_start(testsystem.system, positions_nm(testsystem.positions), int(i), int(j), r0, box)
    top = md.Topology.from_openmm(testsystem.topology)
    cvs = {"dimer_distance": Distance(top, (int(i), int(j)), tuple(float(x) for x in np.diag(box)))}
    kT = kt_kjmol(_WCA_TEMPERATURE)
    return MolecularSystem(
        name="dimer-wca",
        system=testsystem.system,
        topology=top,
        openmm_topology=testsystem.topology,
        positions=positions,
        temperature=_WCA_TEMPERATURE,
        platform="CPU",
        collective_variables=cvs,
        states=builtin_states("dimer-wca", cvs),
        description=(
            f"double-well dimer (barrier {h / kT:.2f} kT, minima at {r0:.4f} and {r0 + 2 * w:.4f} nm) "
            f"in {testsystem.system.getNumParticles() - 2} WCA particles at reduced density {_WCA_REDUCED_DENSITY}, "
            f"periodic box {box[0, 0]:.4f} nm, {_WCA_TEMPERATURE:.2f} K; starts closed"
        ),
        box_vectors=box,
    )


def _closed_dimer_start(system: openmm.System, positions: np.ndarray, i: int, j: int, r0: float, box: np.ndarray) -> np.ndarray:
    """Put dimer atom j at distance r0 from atom i and relax the bath around it.

    openmmtools 0.27 leaves the dimer atoms far apart (its reordering is discarded), and its
    dimer bond is not periodic, so the start would sit at an enormous energy.
    """
    xyz = positions.copy()
    lengths = np.diag(box)
    delta = xyz - xyz[i]
    delta -= lengths * np.round(delta / lengths)
    d = np.linalg.norm(delta, axis=1)
    d[i] = np.inf
    nearest = int(np.argmin(d))
    # The bath particle nearest to i takes j's old place; j goes next to i, in the same direction.
    xyz[nearest], xyz[j] = xyz[j].copy(), xyz[i] + r0 * delta[nearest] / d[nearest]
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(xyz)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    relaxed = positions_nm(context.getState(getPositions=True).getPositions(asNumpy=True))
    del context
    return relaxed


TRPZIP2_PDB = DATA_DIR / "trpzip2-implicit.pdb"


@_register("trpzip2-implicit")
def _trpzip2_implicit() -> MolecularSystem:
    if not TRPZIP2_PDB.exists():
        raise OSError(f"{TRPZIP2_PDB} is missing; regenerate it with scripts/make_trpzip2_pdb.py")
    pdb = app.PDBFile(str(TRPZIP2_PDB))
    forcefield = app.ForceField("amber14-all.xml", "implicit/gbn2.xml")
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    top = md.Topology.from_openmm(pdb.topology)
    positions = positions_nm(pdb.positions)
    ca = tuple(int(a) for a in top.select("name CA"))
    cvs = {"rmsd_ca": RMSD(top, positions, ca), "q_native": NativeContacts(top, positions, native_contact_pairs(top, positions))}
    return MolecularSystem(
        name="trpzip2-implicit",
        system=system,
        topology=top,
        openmm_topology=pdb.topology,
        positions=positions,
        temperature=300.0,
        platform="CPU",
        collective_variables=cvs,
        states=builtin_states("trpzip2-implicit", cvs),
        description="trpzip2 (SWTWENGKWTWK-NH2, 1LE1 model 1), amber14 + GBn2 implicit solvent, no constraints, 300 K",
    )


def _one_particle(name: str, system: openmm.System, start: tuple[float, float], description: str) -> MolecularSystem:
    omm_top = app.Topology()
    residue = omm_top.addResidue("TOY", omm_top.addChain())
    omm_top.addAtom("P", None, residue)
    cvs = {"x": Coordinate(0, 0), "y": Coordinate(0, 1)}
    return MolecularSystem(
        name=name,
        system=system,
        topology=md.Topology.from_openmm(omm_top),
        openmm_topology=omm_top,
        positions=np.array([[start[0], start[1], 0.0]]),
        temperature=300.0,
        platform="Reference",
        collective_variables=cvs,
        states=builtin_states(name, cvs),
        description=description,
    )


@_register("double-well")
def _double_well() -> MolecularSystem:
    from ..energies.toy_systems import double_well_system

    return _one_particle(
        "double-well",
        double_well_system(temperature=300.0),
        (-1.7, 0.0),  # near the left minimum of x^4 - 6 x^2 + x
        "one particle in the 2-D double well (x, y in nm); states by the sign of x",
    )


@_register("mueller-brown")
def _mueller_brown() -> MolecularSystem:
    from ..energies.toy_systems import mueller_brown_system

    return _one_particle(
        "mueller-brown",
        mueller_brown_system(temperature=300.0),
        MUELLER_BROWN_MINIMA["A"],
        "one particle in the Mueller-Brown potential (x, y in nm); states by nearest minimum",
    )


@_register("trpzip2-go")
def _trpzip2_go() -> MolecularSystem:
    from .go_model import build_go_model

    go = build_go_model(TRPZIP2_PDB)
    return MolecularSystem(
        name="trpzip2-go", system=go.system, topology=go.topology, openmm_topology=go.topology.to_openmm(),
        positions=go.positions, temperature=300.0, platform="Reference",
        collective_variables=go.collective_variables, states=builtin_states("trpzip2-go", go.collective_variables),
        description=go.description + "; 300 K (about 73 % folded; melts near 358 K)",
    )


@_register("particle-dimer")
def _particle_dimer() -> MolecularSystem:
    from ..energies.particle_dimer import ParticleDimer, dimer_distance, in_plane, particle_dimer_system, start_positions

    energy = ParticleDimer()
    omm_top = app.Topology()
    chain = omm_top.addChain()
    dimer = omm_top.addResidue("DIM", chain)
    atoms = [omm_top.addAtom(f"D{i + 1}", app.element.argon, dimer) for i in range(2)]
    omm_top.addBond(*atoms)
    for _ in range(energy.n_solvent):
        omm_top.addAtom("S", app.element.argon, omm_top.addResidue("BTH", chain))
    cvs = {"dimer_distance": dimer_distance}
    return MolecularSystem(
        name="particle-dimer",
        system=particle_dimer_system(energy, temperature=300.0),
        topology=md.Topology.from_openmm(omm_top),
        openmm_topology=omm_top,
        positions=in_plane(start_positions(energy)),
        temperature=300.0,
        platform="Reference",
        collective_variables=cvs,
        states=builtin_states("particle-dimer", cvs),
        description=(
            f"2-D bistable dimer in {energy.n_solvent} repulsive particles (Noe et al. 2019), x, y in nm, "
            "energies in kT at 300 K, z a free standard normal; starts closed"
        ),
    )
