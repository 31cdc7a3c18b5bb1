"""Z-matrix construction from topologies and validation of user z-matrices."""

from __future__ import annotations

import importlib.util
import os

import mdtraj
import numpy as np
import openmm.app as app
import openmmtools
import pytest

from openmm_bg.coordinates import build_zmatrix, validate_zmatrix

OPENMMTOOLS_DATA = os.path.join(os.path.dirname(openmmtools.__file__), "data")
_PDBFIXER = importlib.util.find_spec("pdbfixer")
#: villin headpiece (1VII, 36 residues, 596 atoms with hydrogens), shipped with pdbfixer's tests
VILLIN_PDB = os.path.join(os.path.dirname(_PDBFIXER.origin), "tests", "data", "test.pdb") if _PDBFIXER else ""


def alanine_dipeptide_topology() -> app.Topology:
    from openmmtools import testsystems

    return testsystems.AlanineDipeptideVacuum(constraints=None).topology


def benzene_toluene_topology() -> mdtraj.Topology:
    prmtop = app.AmberPrmtopFile(os.path.join(OPENMMTOOLS_DATA, "benzene-toluene-implicit", "complex.prmtop"))
    return mdtraj.Topology.from_openmm(prmtop.topology)


def toluene_topology() -> mdtraj.Topology:
    top = benzene_toluene_topology()
    return top.subset(top.select("resname TOL"))


def villin_topology() -> mdtraj.Topology:
    if not os.path.exists(VILLIN_PDB):
        pytest.skip(f"villin headpiece test structure of pdbfixer not found at {VILLIN_PDB}")
    return mdtraj.Topology.from_openmm(app.PDBFile(VILLIN_PDB).topology)


def check_follows_bonds(top: mdtraj.Topology, zmatrix: np.ndarray) -> None:
    """Every bond partner is a chemical bond; every angle partner is bonded to the bond partner."""
    bonds = {frozenset((a.index, b.index)) for a, b in top.bonds}
    hydrogen = np.array([a.element.symbol == "H" for a in top.atoms])
    for k, (atom, b, a, _) in enumerate(zmatrix.tolist()):
        if k >= 1:
            assert frozenset((atom, b)) in bonds, f"row {k}: {atom}-{b} is not a bond"
            if hydrogen[atom]:
                assert not hydrogen[b], f"row {k}: hydrogen {atom} placed from hydrogen {b}"
        if k >= 2:
            assert frozenset((b, a)) in bonds, f"row {k}: angle partner {a} not bonded to {b}"
    # heavy atoms come first
    order_hydrogen = hydrogen[zmatrix[:, 0]]
    assert not order_hydrogen[: (~hydrogen).sum()].any()


@pytest.mark.parametrize("make", [alanine_dipeptide_topology, toluene_topology, villin_topology])
def test_built_zmatrix_is_valid_and_follows_bonds(make):
    top = make()
    zmatrix = build_zmatrix(top)
    mdtop = top if isinstance(top, mdtraj.Topology) else mdtraj.Topology.from_openmm(top)
    assert zmatrix.shape == (mdtop.n_atoms, 4) and zmatrix.dtype == np.int64
    np.testing.assert_array_equal(validate_zmatrix(zmatrix, mdtop.n_atoms), zmatrix)
    check_follows_bonds(mdtop, zmatrix)


def test_backbone_first_and_phi_psi_are_torsions():
    top = mdtraj.Topology.from_openmm(alanine_dipeptide_topology())
    zmatrix = build_zmatrix(top)
    main_chain = [a.index for a in top.atoms if a.name in ("N", "CA", "C") and a.residue.is_protein]
    assert set(zmatrix[: len(main_chain), 0]) == set(main_chain)
    frame = mdtraj.Trajectory(np.zeros((1, top.n_atoms, 3)), top)
    torsions = {tuple(row) for row in zmatrix[3:].tolist()}
    for compute in (mdtraj.compute_phi, mdtraj.compute_psi):
        (quartet,) = compute(frame)[0].tolist()
        assert tuple(reversed(quartet)) in torsions


def test_openmm_and_mdtraj_topologies_agree():
    top = alanine_dipeptide_topology()
    np.testing.assert_array_equal(build_zmatrix(top), build_zmatrix(mdtraj.Topology.from_openmm(top)))


def test_disconnected_topology_is_rejected():
    with pytest.raises(ValueError, match="2 connected components"):
        build_zmatrix(benzene_toluene_topology())


def test_topology_without_bonds_is_rejected():
    top = mdtraj.Topology()
    residue = top.add_residue("UNK", top.add_chain())
    for name in ("C1", "C2", "C3"):
        top.add_atom(name, mdtraj.element.carbon, residue)
    with pytest.raises(ValueError, match="no bonds"):
        build_zmatrix(top)


def test_wrong_topology_type_is_rejected():
    with pytest.raises(TypeError, match="mdtraj.Topology, an openmm.app.Topology"):
        build_zmatrix(42)
    with pytest.raises(OSError, match="does not exist"):
        build_zmatrix("no-such-file.pdb")


GOOD = [[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [3, 1, 0, 2]]


@pytest.mark.parametrize(
    "zmatrix, n_atoms, error, message",
    [
        (np.array(GOOD, dtype=float), None, TypeError, "integers"),
        (np.array(GOOD)[:, :3], None, ValueError, r"shape \(n_atoms, 4\)"),
        (GOOD, 5, ValueError, "must have 5 rows"),
        (GOOD[:2], None, ValueError, "at least 3 atoms"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [7, 1, 0, 2]], None, ValueError, "unknown atom index 7"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [1, 1, 0, 2]], None, ValueError, "atom 1 is placed more than once"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [3, 1, 0, 9]], None, ValueError, "unknown atom index 9"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 3, 2, -1], [3, 1, 0, 2]], None, ValueError, "placed later"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, -1, -1], [3, 1, 0, 2]], None, ValueError, "must name 2 partner"),
        ([[2, 0, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [3, 1, 0, 2]], None, ValueError, "must name 0 partner"),
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [3, 1, 1, 2]], None, ValueError, "distinct"),
    ],
)
def test_validator_names_the_problem(zmatrix, n_atoms, error, message):
    with pytest.raises(error, match=message):
        validate_zmatrix(zmatrix, n_atoms)


@pytest.mark.parametrize(
    "rows, n_atoms, message",
    [
        ([[2, -1, -1, -1], [0, 2, -1, -1], [1, 0, 2, -1], [3, 1, 0, 2], [3, 1, 0, 2]], 5, r"atoms \[4\] are missing"),
        (GOOD, 5, r"atoms \[4\] are missing"),
    ],
)
def test_validator_reports_missing_atoms(rows, n_atoms, message):
    with pytest.raises(ValueError, match=message):
        validate_zmatrix(rows, n_atoms)


def test_validator_accepts_references_that_are_not_bonds():
    # a user z-matrix may use any earlier atom, e.g. to join several molecules
    np.testing.assert_array_equal(validate_zmatrix(GOOD), np.array(GOOD))
