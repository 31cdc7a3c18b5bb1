"""Ready-made systems, user systems, and collective variables against independent numpy references."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

from openmm_bg.molecules import collective_variables as cv
from openmm_bg.simulation.langevin import repartition_hydrogen_mass
from openmm_bg.molecules import load_system
from openmm_bg.energies.openmm_bridge import reduced_energies
from openmm_bg.molecules.systems import MolecularSystem, get_system, list_systems
from openmm_bg.units import kt_kjmol

MOLECULAR = ["ala2-vacuum", "ala2-implicit", "dimer-wca", "trpzip2-implicit"]
TOYS = ["double-well", "mueller-brown"]
HAVE_TOYS = importlib.util.find_spec("openmm_bg.energies.toy_systems") is not None


@pytest.fixture(scope="module")
def systems() -> dict[str, MolecularSystem]:
    return {name: get_system(name) for name in MOLECULAR}


def test_registry_names_and_unknown_name():
    assert set(MOLECULAR + TOYS) <= set(list_systems())
    with pytest.raises(ValueError, match="unknown system 'ala3'.*ala2-vacuum.*trpzip2-implicit"):
        get_system("ala3")


@pytest.mark.parametrize("name", MOLECULAR)
def test_system_builds_with_finite_energy_and_consistent_topology(systems, name):
    mol = systems[name]
    assert mol.name == name
    assert mol.positions.shape == (mol.system.getNumParticles(), 3) == (mol.topology.n_atoms, 3)
    assert mol.openmm_topology.getNumAtoms() == mol.topology.n_atoms
    u = mol.reduced_potential(mol.positions)
    assert u.shape == (1,) and np.isfinite(u[0])
    # Atom masses in the System follow the topology's elements (no repartitioning in the registry).
    for atom in mol.topology.atoms:
        mass = mol.system.getParticleMass(atom.index).value_in_unit(unit.dalton)
        assert mass == pytest.approx(atom.element.mass, rel=0.01), (atom, mass)
    # Positions match the topology: every covalent bond of the topology has a covalent length
    # (0.09-0.2 nm); the dimer's bond (argon pair) lies between its two wells (0.38-0.59 nm).
    lower, upper = (0.3, 0.7) if name == "dimer-wca" else (0.09, 0.2)
    bonds = np.array([[a.index, b.index] for a, b in mol.topology.bonds], dtype=int).reshape(-1, 2)
    assert len(bonds) > 0
    lengths = np.linalg.norm(mol.positions[bonds[:, 0]] - mol.positions[bonds[:, 1]], axis=1)
    assert lengths.min() > lower and lengths.max() < upper, (lengths.min(), lengths.max())
    assert mol.system.getNumConstraints() == 0
    for state in mol.states.values():
        assert state(mol.positions).dtype == bool


@pytest.mark.parametrize("name", MOLECULAR)
def test_platform_is_available(systems, name):
    openmm.Platform.getPlatformByName(systems[name].platform)


@pytest.mark.skipif(not HAVE_TOYS, reason="openmm_bg.energies.toy_systems not written yet")
@pytest.mark.parametrize("name", TOYS)
def test_toy_systems(name):
    import torch

    from openmm_bg.energies.toys import DoubleWell, MuellerBrown

    mol = get_system(name)
    assert mol.positions.shape == (1, 3)
    rng = np.random.default_rng(3)
    xyz = mol.positions[None] + rng.normal(scale=0.3, size=(20, 1, 3))
    # OpenMM's reduced energy is u(x, y) + z^2 / 2 with u the analytic toy energy
    energy = DoubleWell() if name == "double-well" else MuellerBrown()
    u_xy = energy(torch.as_tensor(xyz[:, 0, :2], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(mol.reduced_potential(xyz), u_xy + 0.5 * xyz[:, 0, 2] ** 2, rtol=1e-5, atol=1e-5)
    membership = np.stack([s(xyz) for s in mol.states.values()])
    np.testing.assert_array_equal(membership.sum(0), 1)  # the states partition the plane


def _numpy_dihedral(xyz: np.ndarray, quad) -> np.ndarray:
    """IUPAC dihedral from the textbook formula, independent of mdtraj."""
    p0, p1, p2, p3 = (xyz[:, i].astype(np.float64) for i in quad)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - (b0 * b1n).sum(1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(1, keepdims=True) * b1n
    return np.arctan2((np.cross(b1n, v) * w).sum(1), (v * w).sum(1))


def test_ala2_phi_psi_and_states(systems):
    mol = systems["ala2-vacuum"]
    names = [a.name for a in mol.topology.atoms]
    phi_atoms = mol.collective_variables["phi"].atoms
    assert [names[i] for i in phi_atoms] == ["C", "N", "CA", "C"]
    assert [mol.topology.atom(i).residue.name for i in phi_atoms] == ["ACE", "ALA", "ALA", "ALA"]
    rng = np.random.default_rng(0)
    xyz = mol.positions[None] + rng.normal(scale=0.05, size=(50, mol.n_atoms, 3))
    for key in ("phi", "psi"):
        np.testing.assert_allclose(
            mol.collective_variables[key](xyz), _numpy_dihedral(xyz, mol.collective_variables[key].atoms), atol=1e-5
        )
    phi = mol.collective_variables["phi"](xyz)
    np.testing.assert_array_equal(mol.states["phi_negative"](xyz), phi < 0)
    np.testing.assert_array_equal(mol.states["phi_positive"](xyz), phi > 0)
    assert mol.states["phi_positive"](xyz).any() and mol.states["phi_negative"](xyz).any()


def test_dimer_distance_uses_minimum_image(systems):
    mol = systems["dimer-wca"]
    i, j = mol.collective_variables["dimer_distance"].atoms
    box = np.diag(mol.box_vectors)
    shifted = mol.positions.copy()
    shifted[j] += box * np.array([1, -1, 0])  # a periodic image: same configuration
    d = mol.collective_variables["dimer_distance"](np.stack([mol.positions, shifted]))
    delta = mol.positions[j] - mol.positions[i]
    assert d[0] == pytest.approx(np.linalg.norm(delta - box * np.round(delta / box)), abs=1e-6)
    assert d[1] == pytest.approx(d[0], abs=1e-5)
    assert mol.states["closed"](mol.positions)[0] and not mol.states["open"](mol.positions)[0]
    # the states split at openmmtools' barrier top r0 + w, which BUILTIN_STATES writes out as a number
    bond = next(f for f in mol.system.getForces() if isinstance(f, openmm.CustomBondForce))
    _, _, (_, r0, w) = bond.getBondParameters(0)
    at_barrier = mol.positions.copy()
    at_barrier[j] = mol.positions[i] + (r0 + w) * np.array([1.0, 0.0, 0.0])
    for offset, state in ((-1e-5, "closed"), (1e-5, "open")):
        moved = at_barrier.copy()
        moved[j, 0] += offset
        assert mol.states[state](moved)[0], (offset, state)


def test_trpzip2_cvs(systems):
    mol = systems["trpzip2-implicit"]
    assert [r.name for r in mol.topology.residues] == "SER TRP THR TRP GLU ASN GLY LYS TRP THR TRP LYS".split()
    rmsd, q = mol.collective_variables["rmsd_ca"], mol.collective_variables["q_native"]
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    moved = mol.positions @ rotation.T + np.array([0.3, -1.0, 2.0])
    # mdtraj computes RMSD in float32 from sums of squares: about 3e-4 nm of noise at zero.
    assert rmsd(np.stack([mol.positions, moved])) == pytest.approx([0.0, 0.0], abs=1e-3)
    assert q(mol.positions)[0] > 0.99
    stretched = mol.positions * 2.5  # every native distance beyond 1.8 r0: contacts break
    assert q(stretched)[0] < 0.05
    ca = [a.index for a in mol.topology.atoms if a.name == "CA"]
    a, b = mol.positions[ca] - mol.positions[ca].mean(0), stretched[ca] - stretched[ca].mean(0)
    assert rmsd(stretched)[0] == pytest.approx(np.sqrt(((a - b) ** 2).sum(1).mean()), rel=1e-3)
    assert mol.states["folded"](mol.positions)[0] and mol.states["unfolded"](stretched)[0]


def test_collective_variables_reject_bad_shapes(systems):
    mol = systems["ala2-vacuum"]
    with pytest.raises(ValueError, match="positions have 21 atoms but the topology has 22 atoms"):
        mol.collective_variables["phi"](mol.positions[:21])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        cv.dihedrals(mol.positions, mol.topology, np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"\[0, 22\)"):
        cv.distances(mol.positions, mol.topology, np.array([[0, 22]]))


def test_load_system_from_xml_and_pdb(tmp_path, systems):
    mol = systems["ala2-vacuum"]
    xml = tmp_path / "ala2.xml"
    xml.write_text(openmm.XmlSerializer.serialize(mol.system))
    pdb = tmp_path / "ala2.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(mol.openmm_topology, mol.positions * unit.nanometer, handle)
    own = load_system(pdb, xml, temperature=300.0)
    assert own.name == "ala2" and own.topology.n_atoms == 22
    # PDB keeps 3 decimals in Angstrom: compare energies at the PDB's own positions.
    np.testing.assert_allclose(own.reduced_potential(own.positions), mol.reduced_potential(own.positions), rtol=1e-10)
    np.testing.assert_allclose(own.positions, mol.positions, atol=6e-5)


def test_load_system_from_prmtop_and_forcefield(systems):
    import openmmtools

    folder = os.path.join(os.path.dirname(openmmtools.__file__), "data", "alanine-dipeptide-gbsa")
    own = load_system(os.path.join(folder, "alanine-dipeptide.crd"), os.path.join(folder, "alanine-dipeptide.prmtop"), implicit_solvent="none")
    assert own.topology.n_atoms == 22 and np.isfinite(own.reduced_potential(own.positions)).all()
    assert own.system.getNumConstraints() == 0
    trp = systems["trpzip2-implicit"]
    from openmm_bg.molecules.systems import TRPZIP2_PDB

    again = load_system(TRPZIP2_PDB, forcefield=["amber14-all.xml", "implicit/gbn2.xml"], platform=trp.platform)
    # CPU platform: single-precision forces, summation order varies between Contexts
    np.testing.assert_allclose(again.reduced_potential(trp.positions), trp.reduced_potential(trp.positions), rtol=1e-6)


def test_load_system_rejects_mismatch(tmp_path, systems):
    mol = systems["ala2-vacuum"]
    xml = tmp_path / "ala2.xml"
    xml.write_text(openmm.XmlSerializer.serialize(mol.system))
    from openmm_bg.molecules.systems import TRPZIP2_PDB

    with pytest.raises(ValueError, match="218 atoms but the System has 22 particles"):
        load_system(TRPZIP2_PDB, xml)
    with pytest.raises(ValueError, match="give either a System"):
        load_system(TRPZIP2_PDB)
    with pytest.raises(OSError, match="does not exist"):
        load_system(tmp_path / "missing.pdb", xml)


def test_reduced_potential_matches_openmm_and_flags_failures(systems):
    mol = systems["ala2-vacuum"]
    context = openmm.Context(mol.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert mol.reduced_potential(mol.positions).shape == (1,)
    assert mol.reduced_potential(mol.positions)[0] == pytest.approx(energy / kt_kjmol(300.0), rel=1e-9)
    bad = np.stack([mol.positions, np.full_like(mol.positions, np.nan)])
    u = reduced_energies(mol.system, 300.0, bad, platform="Reference")
    assert np.isfinite(u[0]) and u[1] == np.inf


def test_hydrogen_mass_repartitioning_keeps_total_mass(systems):
    mol = systems["ala2-vacuum"]
    heavy = repartition_hydrogen_mass(mol.system, mol.openmm_topology, 4.0)

    def masses(s):
        return np.array([s.getParticleMass(i).value_in_unit(unit.dalton) for i in range(s.getNumParticles())])

    hydrogens = np.array([a.element.symbol == "H" for a in mol.topology.atoms])
    assert masses(heavy).sum() == pytest.approx(masses(mol.system).sum(), rel=1e-12)
    np.testing.assert_allclose(masses(heavy)[hydrogens], 4.0)
    assert masses(mol.system)[hydrogens].max() < 1.1  # the original is untouched
    np.testing.assert_allclose(mol.reduced_potential(mol.positions), reduced_energies(heavy, 300.0, mol.positions, platform="Reference"))
    with pytest.raises(ValueError, match="218 atoms but the System has 22"):
        repartition_hydrogen_mass(mol.system, get_system("trpzip2-implicit").openmm_topology, 4.0)


@pytest.mark.parametrize("name", MOLECULAR)
def test_collective_variables_and_states_pickle(systems, name):
    # Worker processes are spawned, so everything a system hands out must pickle.
    import pickle

    mol = systems[name]
    for table in (mol.collective_variables, mol.states):
        for key, function in table.items():
            clone = pickle.loads(pickle.dumps(function))
            np.testing.assert_array_equal(clone(mol.positions), function(mol.positions), err_msg=key)
