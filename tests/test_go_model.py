"""The C-alpha Go model against a numpy computation of every term, and its checks of bad input."""

from __future__ import annotations

import mdtraj as md
import numpy as np
import openmm
import pytest

from openmm_bg.molecules.go_model import CLEMENTI_CONSTANTS, DEFAULT_EPSILON, FORCE_GROUPS, GO_STATES, build_go_model
from openmm_bg.molecules.states import parse_state
from openmm_bg.molecules.systems import MolecularSystem
from openmm_bg.reference.bundled import bundled_path
from openmm_bg.units import MOLAR_GAS_CONSTANT

PDB = bundled_path("trpzip2-implicit.pdb")


@pytest.fixture(scope="module")
def native() -> md.Trajectory:
    return md.load(str(PDB))


@pytest.fixture(scope="module")
def go():
    return build_go_model(PDB)


def _ca(native: md.Trajectory) -> np.ndarray:
    return native.xyz[0, native.topology.select("name CA")].astype(np.float64)


def _dihedrals_numpy(x: np.ndarray) -> np.ndarray:
    """IUPAC dihedrals of consecutive quadruplets of a (n, 3) trace, (-pi, pi]."""
    b1, b2, b3 = x[1:-2] - x[:-3], x[2:-1] - x[1:-2], x[3:] - x[2:-1]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=1) * np.einsum("ij,ij->i", b1, n2)
    return np.arctan2(y, np.einsum("ij,ij->i", n1, n2))


def _angles_numpy(x: np.ndarray) -> np.ndarray:
    u, v = x[:-2] - x[1:-1], x[2:] - x[1:-1]
    return np.arccos(np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)))


def _contact_map(native: md.Trajectory) -> set[tuple[int, int]]:
    """Residue pairs 4 or more apart with closest heavy atoms under 0.45 nm, by mdtraj."""
    n = native.topology.n_residues
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 4, n)])
    d, pairs = md.compute_contacts(native, pairs, scheme="closest-heavy")
    residues = [r.index for r in native.topology.residues if r.is_protein]
    bead = {r: k for k, r in enumerate(residues)}
    return {(bead[i], bead[j]) for (i, j), dij in zip(pairs, d[0]) if dij < 0.45}


def _hand_energies(x: np.ndarray, reference: np.ndarray, contacts: set[tuple[int, int]], eps: float) -> dict[str, float]:
    """Each term of the Clementi et al. (2000) energy, kJ/mol, from the paper's formulas."""
    k_r, k_theta = 100.0 * 100.0 * eps, 20.0 * eps  # 100 eps/A^2 in nm, 20 eps/rad^2
    bonds = np.linalg.norm(np.diff(x, axis=0), axis=1)
    bonds0 = np.linalg.norm(np.diff(reference, axis=0), axis=1)
    dphi = _dihedrals_numpy(x) - _dihedrals_numpy(reference)
    n = len(x)
    r = np.linalg.norm(x[:, None] - x[None], axis=-1)
    r0 = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    native = nonnative = 0.0
    for i in range(n):
        for j in range(i + 4, n):
            if (i, j) in contacts:
                native += eps * (5 * (r0[i, j] / r[i, j]) ** 12 - 6 * (r0[i, j] / r[i, j]) ** 10)
            else:
                nonnative += eps * (0.4 / r[i, j]) ** 12
    return {
        "bonds": float(np.sum(k_r * (bonds - bonds0) ** 2)),
        "angles": float(np.sum(k_theta * (_angles_numpy(x) - _angles_numpy(reference)) ** 2)),
        "dihedrals": float(np.sum(eps * (1 - np.cos(dphi)) + 0.5 * eps * (1 - np.cos(3 * dphi)))),
        "native": native,
        "nonnative": nonnative,
    }


def _openmm_energies(system: openmm.System, x: np.ndarray) -> dict[str, float]:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x)
    energy = lambda groups: context.getState(getEnergy=True, groups=groups).getPotentialEnergy()._value
    return {name: energy({group}) for name, group in FORCE_GROUPS.items()} | {"total": energy(-1)}


def test_contact_map_and_topology(go, native):
    assert set(map(tuple, go.contacts.tolist())) == _contact_map(native)
    assert go.topology.n_atoms == go.topology.n_residues == 12 == go.system.getNumParticles()
    assert [a.name for a in go.topology.atoms] == ["CA"] * 12
    assert [(b[0].index, b[1].index) for b in go.topology.bonds] == [(i, i + 1) for i in range(11)]
    assert [r.name for r in go.topology.residues] == [r.name for r in native.topology.residues if r.is_protein]
    np.testing.assert_allclose(go.positions, _ca(native), atol=0)
    n_pairs = sum(12 - (i + 4) for i in range(8))
    assert len(go.contacts) + len(go.nonnative) == n_pairs
    assert go.epsilon == pytest.approx(MOLAR_GAS_CONSTANT * 300.0) == DEFAULT_EPSILON


@pytest.mark.parametrize("displacement", [0.0, 0.01, 0.05, 0.15])
def test_every_term_matches_the_formula(go, native, displacement):
    rng = np.random.default_rng(int(displacement * 1000))
    x = go.positions + displacement * rng.standard_normal(go.positions.shape)
    hand = _hand_energies(x, _ca(native), _contact_map(native), DEFAULT_EPSILON)
    omm = _openmm_energies(go.system, x)
    for name, value in hand.items():
        # terms that vanish at the native compare to the scale of a typical term, eps
        assert omm[name] == pytest.approx(value, rel=1e-6, abs=1e-9 * DEFAULT_EPSILON), name
    assert omm["total"] == pytest.approx(sum(hand.values()), rel=1e-6)


def test_native_energy_is_minus_eps_per_contact_plus_a_small_repulsion(go):
    omm = _openmm_energies(go.system, go.positions)
    assert omm["bonds"] == omm["angles"] == 0.0
    assert abs(omm["dihedrals"]) < 1e-9
    assert omm["native"] == pytest.approx(-DEFAULT_EPSILON * len(go.contacts), rel=1e-9)
    assert 0.0 < omm["nonnative"] < 0.05 * DEFAULT_EPSILON


def test_native_is_a_local_minimum(go):
    rng = np.random.default_rng(7)
    e0 = _openmm_energies(go.system, go.positions)["total"]
    for _ in range(20):
        x = go.positions + 0.003 * rng.standard_normal(go.positions.shape)
        assert _openmm_energies(go.system, x)["total"] > e0
    context = openmm.Context(go.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(go.positions)
    forces = context.getState(getForces=True).getForces(asNumpy=True)._value
    # only the weak non-native repulsion pushes at the native: less than a bond stretched by 1e-5 nm pulls back
    bond_pull = 2 * CLEMENTI_CONSTANTS["k_bond"] * DEFAULT_EPSILON * 1e-5
    assert np.abs(forces).max() < bond_pull


def test_collective_variables_and_states(go):
    stretched = np.zeros_like(go.positions)
    stretched[:, 0] = 0.38 * np.arange(len(stretched))
    x = np.stack([go.positions, stretched])
    q = go.collective_variables["q_native"](x)
    assert q[0] == pytest.approx(1.0, abs=1e-3) and q[1] < 0.01
    assert go.collective_variables["rmsd_ca"](x)[0] == pytest.approx(0.0, abs=1e-6)
    rg = np.sqrt(np.mean(np.sum((go.positions - go.positions.mean(axis=0)) ** 2, axis=1)))
    assert go.collective_variables["rg"](x)[0] == pytest.approx(rg, rel=1e-5)
    folded = parse_state(GO_STATES["folded"], go.collective_variables)
    unfolded = parse_state(GO_STATES["unfolded"], go.collective_variables)
    assert folded(x).tolist() == [True, False] and unfolded(x).tolist() == [False, True]


def test_wraps_into_a_molecular_system(go):
    mol = MolecularSystem(
        name="trpzip2-go", system=go.system, topology=go.topology, openmm_topology=go.topology.to_openmm(),
        positions=go.positions, temperature=300.0, platform="Reference", collective_variables=go.collective_variables,
    )
    u = mol.reduced_potential(go.positions)
    assert u[0] == pytest.approx(_openmm_energies(go.system, go.positions)["total"] / DEFAULT_EPSILON, rel=1e-9)


def test_a_c_alpha_trace_uses_c_alpha_distances(native):
    trace = native.atom_slice(native.topology.select("name CA"))
    go = build_go_model(trace, ca_contact_cutoff=0.6)
    x = trace.xyz[0].astype(np.float64)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    expected = {(i, j) for i in range(12) for j in range(i + 4, 12) if d[i, j] < 0.6}
    assert set(map(tuple, go.contacts.tolist())) == expected


def test_bad_input(native, tmp_path):
    no_ca = native.atom_slice(native.topology.select("not name CA"))
    no_ca.save_pdb(str(tmp_path / "no_ca.pdb"))
    with pytest.raises(ValueError, match="no C-alpha atom"):
        build_go_model(tmp_path / "no_ca.pdb")
    bad = native[:]
    bad.xyz[0, bad.topology.select("name CA")[3]] = np.nan
    with pytest.raises(ValueError, match="finite"):
        build_go_model(bad)
    gap = native.atom_slice(native.topology.select("not resid 5"))
    with pytest.raises(ValueError, match="chain is broken between residues GLU5-GLY7"):
        build_go_model(gap)
    two_chains = native.stack(native)
    with pytest.raises(ValueError, match="2 chains"):
        build_go_model(two_chains)
    with pytest.raises(ValueError, match="no native contact"):
        build_go_model(native.atom_slice(native.topology.select("resid 0 to 3")))
    with pytest.raises(ValueError, match="epsilon must be a finite positive number of kJ/mol"):
        build_go_model(native, epsilon=-1.0)
    with pytest.raises(ValueError, match="frame must lie in"):
        build_go_model(native, frame=3)
    with pytest.raises(TypeError, match="path or an mdtraj.Trajectory"):
        build_go_model(42)
    with pytest.raises(OSError):
        build_go_model(tmp_path / "missing.pdb")


def test_registered_go_model_states_are_the_builders():
    from openmm_bg.molecules.go_model import GO_STATES
    from openmm_bg.molecules.states import BUILTIN_STATES
    from openmm_bg.molecules.systems import get_system

    assert BUILTIN_STATES["trpzip2-go"] == GO_STATES
    molecule = get_system("trpzip2-go")
    assert molecule.n_atoms == 12 and set(molecule.states) == {"folded", "unfolded"}
    # the native structure is folded
    from openmm_bg.molecules.states import evaluate_states

    folded, unfolded = evaluate_states([molecule.states["folded"], molecule.states["unfolded"]], molecule.positions[None])
    assert folded[0] and not unfolded[0]
