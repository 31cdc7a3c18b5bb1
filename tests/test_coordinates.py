"""Cartesian <-> internal coordinates: round trips, exact log-determinants, rigid motion,
constraints, degeneracies and normalisation.

The bijection contract of the coordinate layers on alanine dipeptide (log-determinants
against autograd with and without the rigid body and with constraints, gradients,
saving) is in tests/test_contract.py; this file adds other molecules, float32 and
what is particular to internal coordinates."""

from __future__ import annotations

import math
import os

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest
import torch
from openmm import unit

from openmm_bg.coordinates import (
    InternalCoordinateNormalization,
    InternalCoordinateTransform,
    build_zmatrix,
)

from test_contract import autograd_log_det
from test_zmatrix import OPENMMTOOLS_DATA, VILLIN_PDB, toluene_topology

# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def alanine_md():
    """300 frames of 300 K Langevin dynamics of alanine dipeptide in vacuum, no constraints (nm)."""
    from openmmtools import testsystems

    test_system = testsystems.AlanineDipeptideVacuum(constraints=None)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 5 / unit.picosecond, 1 * unit.femtosecond)
    integrator.setRandomNumberSeed(2024)
    context = openmm.Context(test_system.system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(test_system.positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2024)
    integrator.step(500)
    frames = []
    for _ in range(300):
        integrator.step(20)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return test_system, torch.tensor(np.array(frames), dtype=torch.float64)


def _fixed_width(lines: list[str], start: int, count: int, per_line: int, width: int) -> tuple[list[str], int]:
    n_lines = -(-count // per_line)
    values = [line[k : k + width] for line in lines[start : start + n_lines] for k in range(0, per_line * width, width)]
    return [v for v in values if v.strip()][:count], start + n_lines


def _trpzip2_topology_from_old_prmtop(path: str) -> tuple[mdtraj.Topology, int]:
    """Read the pre-%FLAG (Amber 6) prmtop shipped with openmmtools, which OpenMM cannot parse."""
    lines = open(path).read().splitlines()
    pointers, at = _fixed_width(lines, 1, 31, 12, 6)
    n_atoms, n_types, n_bonh, _, _, _, _, _, _, _, _, n_res, n_bona, _, _, n_bnd, n_ang, n_ptra, n_atyp = map(int, pointers[:19])
    names, at = _fixed_width(lines, at, n_atoms, 20, 4)
    for count, per_line, width in [(n_atoms, 5, 16)] * 2 + [(n_atoms, 12, 6)] * 2 + [(n_types**2, 12, 6)]:
        _, at = _fixed_width(lines, at, count, per_line, width)
    residue_names, at = _fixed_width(lines, at, n_res, 20, 4)
    residue_starts, at = _fixed_width(lines, at, n_res, 12, 6)
    n_pairs = n_types * (n_types + 1) // 2
    for count in [n_bnd, n_bnd, n_ang, n_ang, n_ptra, n_ptra, n_ptra, n_atyp, n_pairs, n_pairs]:
        _, at = _fixed_width(lines, at, count, 5, 16)
    with_h, at = _fixed_width(lines, at, 3 * n_bonh, 12, 6)
    without_h, at = _fixed_width(lines, at, 3 * n_bona, 12, 6)
    residue_names = [r.strip() for r in residue_names]
    n_peptide = int(residue_starts[residue_names.index("Cl-")]) - 1
    top = mdtraj.Topology()
    chain = top.add_chain()
    starts = [int(s) - 1 for s in residue_starts] + [n_atoms]
    for r in range(residue_names.index("Cl-")):
        residue = top.add_residue(residue_names[r], chain)
        for i in range(starts[r], starts[r + 1]):
            top.add_atom(names[i].strip(), mdtraj.element.get_by_symbol(names[i].strip()[0]), residue)
    atoms = list(top.atoms)
    for table in (with_h, without_h):
        for k in range(0, len(table), 3):
            i, j = int(table[k]) // 3, int(table[k + 1]) // 3
            if i < n_peptide and j < n_peptide:
                top.add_bond(atoms[i], atoms[j])
    return top, n_peptide


@pytest.fixture(scope="module")
def trpzip2():
    """The trpzip2 hairpin without water and ion, centred, and 20 perturbed copies of its structure (nm)."""
    folder = os.path.join(OPENMMTOOLS_DATA, "trpzip2-explicit")
    top, n_peptide = _trpzip2_topology_from_old_prmtop(os.path.join(folder, "trpzip2.prmtop"))
    positions = app.AmberInpcrdFile(os.path.join(folder, "trpzip2.crd")).getPositions(asNumpy=True)
    x = torch.tensor(positions.value_in_unit(unit.nanometer)[:n_peptide], dtype=torch.float64)
    x = x - x.mean(dim=0)  # near the origin the float grid is finer, so the round trip is a stricter test
    noise = torch.randn(20, n_peptide, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return top, torch.cat([x[None], x + 0.005 * noise])


@pytest.fixture(scope="module")
def villin():
    """Villin headpiece (1VII, 596 atoms) from pdbfixer's test data, centred, and 5 perturbed copies (nm)."""
    if not os.path.exists(VILLIN_PDB):
        pytest.skip(f"villin headpiece test structure of pdbfixer not found at {VILLIN_PDB}")
    pdb = app.PDBFile(VILLIN_PDB)
    x = torch.tensor(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=torch.float64)
    x = x - x.mean(dim=0)
    noise = torch.randn(5, *x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return pdb.topology, torch.cat([x[None], x + 0.005 * noise])


@pytest.fixture(scope="module")
def toluene():
    top = toluene_topology()
    pdb = app.PDBFile(os.path.join(OPENMMTOOLS_DATA, "benzene-toluene-implicit", "complex.pdb"))
    x = torch.tensor(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[12:], dtype=torch.float64)
    noise = torch.randn(10, *x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return top, torch.cat([x[None], x + 0.005 * noise])


def random_rigid_motion(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply an independent random proper rotation and translation (up to 2 nm) to each configuration."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(x.shape[0], 3, 3, generator=g, dtype=x.dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q = q * torch.sign(torch.linalg.det(q))[:, None, None]
    shift = 2 * torch.rand(x.shape[0], 1, 3, generator=g, dtype=x.dtype)
    return x @ q.transpose(1, 2) + shift


def wrapped(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def check_log_det(transform: InternalCoordinateTransform, x: torch.Tensor) -> None:
    """Analytic ladj of both directions against autograd, to 1e-8 in float64."""
    q, ladj_xq = transform.forward(x)
    _, ladj_qx = transform.inverse(q)
    torch.testing.assert_close(ladj_xq, autograd_log_det(transform.forward, x), atol=1e-8, rtol=0)
    torch.testing.assert_close(ladj_qx, autograd_log_det(transform.inverse, q), atol=1e-8, rtol=0)
    torch.testing.assert_close(ladj_xq + ladj_qx, torch.zeros_like(ladj_xq), atol=1e-10, rtol=0)


def check_round_trip(transform: InternalCoordinateTransform, x: torch.Tensor) -> None:
    """Exact to 1e-10 nm in float64 and 1e-4 nm in float32, both ways."""
    for dtype, tolerance in [(torch.float64, 1e-10), (torch.float32, 1e-4)]:
        xd = x.to(dtype)
        q, _ = transform.forward(xd)
        back, _ = transform.inverse(q)
        assert back.dtype == dtype
        error = (back - xd).abs().max()
        print(f"round trip, {transform.n_atoms} atoms, {x.shape[0]} configurations, {dtype}: max error {float(error):.2g} nm")
        assert error < tolerance, f"{dtype} round trip error {float(error):.3g} nm"
        difference = transform.forward(back)[0] - q
        difference[:, transform.circular] = wrapped(difference[:, transform.circular])
        assert difference.abs().max() < 10 * tolerance


# ----------------------------------------------------------------------------- round trip


def test_round_trip_every_alanine_dipeptide_frame(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    check_round_trip(transform, x)
    assert transform.clamp_counts == {"bond": 0, "angle": 0, "orientation": 0, "frame": 0}


@pytest.mark.parametrize("molecule", ["trpzip2", "toluene", "villin"])
def test_round_trip_other_molecules(molecule, request):
    top, x = request.getfixturevalue(molecule)
    check_round_trip(InternalCoordinateTransform.from_topology(top), x)


def test_flat_input_is_accepted(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    torch.testing.assert_close(transform.forward(x[:5].reshape(5, -1))[0], transform.forward(x[:5])[0], atol=0, rtol=0)


# ----------------------------------------------------------------------------- log-determinant


@pytest.mark.parametrize("molecule", ["toluene", "trpzip2"])
def test_log_det_against_autograd_other_molecules(molecule, request):
    top, x = request.getfixturevalue(molecule)
    check_log_det(InternalCoordinateTransform.from_topology(top), x[1:2])


# ----------------------------------------------------------------------------- layout and rigid motion


def test_layout_and_circular_mask(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    n = 22
    assert transform.dim == 3 * n
    sizes = [len(i) for i in (transform.bond_indices, transform.angle_indices, transform.torsion_indices, transform.rigid_indices)]
    assert sizes == [n - 1, n - 2, n - 3, 6]
    every = torch.cat([transform.bond_indices, transform.angle_indices, transform.torsion_indices, transform.rigid_indices])
    torch.testing.assert_close(torch.sort(every).values, torch.arange(3 * n))
    expected = torch.zeros(3 * n, dtype=torch.bool)
    expected[transform.torsion_indices] = True
    expected[transform.rigid_indices[4:]] = True
    assert torch.equal(transform.circular, expected)
    q, _ = transform.forward(x)
    assert (q[:, transform.circular].abs() <= math.pi).all()
    angles = q[:, transform.angle_indices]
    assert ((angles >= 0) & (angles <= math.pi)).all()
    # the bond of each bond_atoms pair is the bond coordinate
    i, j = transform.bond_atoms.T
    torch.testing.assert_close(q[:, transform.bond_indices], (x[:, i] - x[:, j]).norm(dim=-1), atol=1e-14, rtol=0)


def test_internal_coordinates_ignore_rigid_motion(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    moved = random_rigid_motion(x[:50], seed=4)
    q, ladj = transform.forward(x[:50])
    q_moved, ladj_moved = transform.forward(moved)
    internal = torch.cat([transform.bond_indices, transform.angle_indices])
    torch.testing.assert_close(q_moved[:, internal], q[:, internal], atol=1e-10, rtol=0)
    torsions = transform.torsion_indices
    torch.testing.assert_close(wrapped(q_moved[:, torsions] - q[:, torsions]), torch.zeros_like(q[:, torsions]), atol=1e-10, rtol=0)
    assert (q_moved[:, transform.rigid_indices] - q[:, transform.rigid_indices]).abs().amax(dim=1).min() > 1e-3
    # the rigid-body part of the log-det is the Euler measure, the rest is invariant
    theta, theta_moved = q[:, transform.rigid_indices[3]], q_moved[:, transform.rigid_indices[3]]
    torch.testing.assert_close(ladj_moved + torch.log(torch.sin(theta_moved)), ladj + torch.log(torch.sin(theta)), atol=1e-10, rtol=0)
    # a mirror image is not a rigid motion: torsions change sign
    q_mirror, _ = transform.forward(x[:50] * torch.tensor([1.0, 1.0, -1.0], dtype=x.dtype))
    torch.testing.assert_close(q_mirror[:, torsions], -q[:, torsions], atol=1e-10, rtol=0)


def test_removed_rigid_body_round_trip_and_canonical_frame(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology, remove_rigid_body=True)
    assert transform.dim == 3 * 22 - 6 and len(transform.rigid_indices) == 0
    moved = random_rigid_motion(x, seed=5)
    q, _ = transform.forward(moved)
    torch.testing.assert_close(q, transform.forward(x)[0], atol=1e-10, rtol=0)
    canonical, _ = transform.inverse(q)
    first, second, third = transform.zmatrix[:3, 0]
    torch.testing.assert_close(canonical[:, first], torch.zeros_like(canonical[:, first]), atol=0, rtol=0)
    assert (canonical[:, second, :2].abs() < 1e-15).all() and (canonical[:, second, 2] > 0).all()
    assert (canonical[:, third, 1].abs() < 1e-15).all() and (canonical[:, third, 0] > 0).all()
    torch.testing.assert_close(torch.cdist(canonical, canonical), torch.cdist(x, x), atol=1e-10, rtol=0)
    torch.testing.assert_close(transform.forward(canonical)[0], q, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- constraints


@pytest.fixture(scope="module")
def constrained_alanine(alanine_md):
    """Alanine dipeptide with HBond constraints, and MD frames projected onto them."""
    from openmmtools import testsystems

    test_system = testsystems.AlanineDipeptideVacuum(constraints=app.HBonds)
    transform = InternalCoordinateTransform.from_topology(test_system.topology, system=test_system.system, constraint_tolerance=None)
    q, _ = transform.forward(alanine_md[1])
    x, _ = transform.inverse(q)
    return test_system, transform, x


def test_constrained_bonds_are_removed_and_come_back_exactly(constrained_alanine):
    test_system, transform, x = constrained_alanine
    system = test_system.system
    assert system.getNumConstraints() == 12
    assert transform.dim == 3 * 22 - 12
    for k in range(system.getNumConstraints()):
        i, j, length = system.getConstraintParameters(k)
        distance = (x[:, i] - x[:, j]).norm(dim=-1)
        torch.testing.assert_close(distance, torch.full_like(distance, length.value_in_unit(unit.nanometer)), atol=1e-12, rtol=0)
    # inverse of arbitrary free coordinates also holds them
    q, _ = transform.forward(x)
    noise = torch.randn(q.shape, generator=torch.Generator().manual_seed(6), dtype=q.dtype)
    x_new, _ = transform.inverse(q + 0.01 * noise * (~transform.circular))
    i, j = transform.constrained_atoms.T
    torch.testing.assert_close((x_new[:, i] - x_new[:, j]).norm(dim=-1), transform.constrained_lengths.expand(len(x), -1), atol=1e-12, rtol=0)


def test_constrained_round_trip(constrained_alanine):
    # the log-determinant with constraints is part of the contract (tests/test_contract.py)
    check_round_trip(constrained_alanine[1], constrained_alanine[2])


def test_unconstrained_frames_are_rejected_by_a_constrained_transform(constrained_alanine, alanine_md):
    test_system = constrained_alanine[0]
    strict = InternalCoordinateTransform.from_topology(test_system.topology, system=test_system.system)
    strict.forward(constrained_alanine[2])
    with pytest.raises(ValueError, match="do not satisfy the System's constraints"):
        strict.forward(alanine_md[1])


def test_constraint_that_is_not_a_zmatrix_bond_is_rejected(alanine_md):
    zmatrix = build_zmatrix(alanine_md[0].topology)
    i, j = int(zmatrix[3, 0]), int(zmatrix[3, 3])
    with pytest.raises(ValueError, match="not a bond of the z-matrix"):
        InternalCoordinateTransform(zmatrix, constraints={(i, j): 0.25})
    with pytest.raises(ValueError, match="particles but the topology has"):
        InternalCoordinateTransform.from_topology(alanine_md[0].topology, system=openmm.System())


# ----------------------------------------------------------------------------- degeneracy and bad input


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def test_linear_angle_and_coincident_atoms_are_clamped_and_counted(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    last, bond_partner, angle_partner, _ = transform.zmatrix[-1].tolist()
    assert last not in transform.zmatrix[:, 1:].flatten().tolist()  # nothing is placed from it
    linear, coincident = x[:1].clone(), x[:1].clone()
    linear[0, last] = x[0, bond_partner] + 0.1 * _unit(x[0, bond_partner] - x[0, angle_partner])
    coincident[0, last] = x[0, bond_partner]
    q, ladj = transform.forward(torch.cat([linear, coincident]))
    assert torch.isfinite(q).all() and torch.isfinite(ladj).all()
    assert transform.clamp_counts["angle"] == 2 and transform.clamp_counts["bond"] == 1
    back, ladj_back = transform.inverse(q)
    assert torch.isfinite(ladj_back).all()
    torch.testing.assert_close(back, torch.cat([linear, coincident]), atol=1e-10, rtol=0)
    transform.reset_clamp_counts()
    assert set(transform.clamp_counts.values()) == {0}


def test_collinear_reference_atoms_cannot_be_represented(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    atom, b, a, d = transform.zmatrix[3].tolist()
    bad = x[:2].clone()
    bad[1, b] = x[1, a] + (x[1, b] - x[1, a]).norm() * _unit(x[1, a] - x[1, d])
    with pytest.raises(ValueError, match=rf"cannot be represented: in sample 1, the reference atoms \[{b}, {a}, {d}\] of atom {atom}"):
        transform.forward(bad)


def test_degenerate_frame_in_inverse_is_finite_and_counted(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    q, _ = transform.forward(x[:1])
    # row 4's angle is the frame of row 5: straighten it
    assert transform.zmatrix[5, 1:].tolist() == transform.zmatrix[4, :3].tolist()
    q[0, transform.angle_indices[2]] = math.pi
    back, ladj = transform.inverse(q)
    assert torch.isfinite(back).all() and torch.isfinite(ladj).all()
    assert transform.clamp_counts["frame"] >= 1 and transform.clamp_counts["angle"] == 1


def test_non_finite_and_misshapen_input_is_rejected(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    bad = x[:3].clone()
    bad[2, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 3 configurations hold non-finite positions, first: sample 2"):
        transform.forward(bad)
    with pytest.raises(ValueError, match=r"shape \(batch, 22, 3\) or \(batch, 66\)"):
        transform.forward(x[:3, :21])
    with pytest.raises(TypeError, match="floating-point"):
        transform.forward(x[:3].long())
    with pytest.raises(ValueError, match=r"shape \(batch, 66\)"):
        transform.inverse(x[:3, :5].reshape(3, -1))


def test_inverse_rejects_coordinates_outside_the_domain(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    q, _ = transform.forward(x[:4])
    q[1, transform.bond_indices[3]] = -0.1
    q[2, transform.angle_indices[0]] = 3.2
    q[3, transform.rigid_indices[3]] = -0.1
    assert transform.in_domain(q).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match=r"3 of 4 internal-coordinate vectors \(first: sample 1\) are outside the domain"):
        transform.inverse(q)
    q[:, transform.torsion_indices] += 4 * math.pi  # torsions are periodic: any value is fine
    back, _ = transform.inverse(q[:1])
    torch.testing.assert_close(back, x[:1], atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- normalisation and composition


def test_normalization_puts_the_circular_cut_where_data_are_sparsest():
    # angles around pi straddle the default cut at +-pi; after fitting, none lies near it
    rng = torch.Generator().manual_seed(0)
    angles = torch.remainder(math.pi + 0.3 * torch.randn(2000, generator=rng, dtype=torch.float64) + math.pi, 2 * math.pi) - math.pi
    q = torch.stack([angles, torch.randn(2000, generator=rng, dtype=torch.float64)], dim=1)
    norm = InternalCoordinateNormalization.fit(q, torch.tensor([True, False]))
    y, _ = norm.forward(q)
    assert y[:, 0].abs().max() < 0.75
    assert y[:, 0].std() == pytest.approx(0.3 / math.pi, rel=0.1)


def test_normalization_fit_and_round_trip(alanine_md):
    test_system, x = alanine_md
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    q, _ = transform.forward(x)
    norm = InternalCoordinateNormalization.fit(q, transform.circular)
    y, _ = norm.forward(q)
    linear = ~transform.circular
    torch.testing.assert_close(y[:, linear].mean(0), torch.zeros(int(linear.sum()), dtype=y.dtype), atol=1e-10, rtol=0)
    torch.testing.assert_close(y[:, linear].std(0), torch.ones(int(linear.sum()), dtype=y.dtype), atol=1e-10, rtol=0)
    circ = transform.circular
    assert (y[:, circ] >= -1).all() and (y[:, circ] < 1).all()
    shift = q[:, circ] - norm.offset[circ] - math.pi * y[:, circ]
    torch.testing.assert_close(torch.remainder(shift + 1.0, 2 * math.pi) - 1.0, torch.zeros_like(shift), atol=1e-12, rtol=0)
    back, _ = norm.inverse(y)
    torch.testing.assert_close(back[:, linear], q[:, linear], atol=1e-12, rtol=0)
    # inverse does not wrap: circular values come back modulo 2 pi, which the periodic transform ignores
    torch.testing.assert_close(transform.inverse(back)[0], transform.inverse(q)[0], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"dimensions \[0\] have a standard deviation below"):
        InternalCoordinateNormalization.fit(torch.cat([torch.ones(len(q), 1, dtype=q.dtype), q], 1), torch.cat([torch.tensor([False]), transform.circular]))
    with pytest.raises(ValueError, match="1-D boolean mask"):
        InternalCoordinateNormalization(torch.zeros(3))


def test_constraint_metric_matches_the_mass_metric_identity(constrained_alanine):
    """Documented reweighting to constrained dynamics: det G_soft = det G_full * det Z (Fixman).

    G is the mass-metric tensor J^T M J of the inverse map; G_soft is that of
    the constrained transform, G_full that of the unconstrained one at the
    same configuration.
    """
    from openmm_bg.coordinates import constraint_metric_log_det, particle_masses

    test_system, constrained, x = constrained_alanine
    free = InternalCoordinateTransform.from_topology(test_system.topology)
    masses = torch.tensor(particle_masses(test_system.system), dtype=x.dtype)
    mass_diagonal = torch.diag(masses.repeat_interleave(3))
    half_log_det_z = constraint_metric_log_det(x[:2], constrained.constrained_atoms, masses)
    for k in range(2):
        soft = torch.autograd.functional.jacobian(lambda p: constrained.inverse(p[None])[0][0].reshape(-1), constrained.forward(x[k : k + 1])[0][0])
        full = torch.autograd.functional.jacobian(lambda p: free.inverse(p[None])[0][0].reshape(-1), free.forward(x[k : k + 1])[0][0])
        log_det_soft = torch.linalg.slogdet(soft.T @ mass_diagonal @ soft)[1]
        log_det_full = torch.linalg.slogdet(full.T @ mass_diagonal @ full)[1]
        torch.testing.assert_close(0.5 * (log_det_soft - log_det_full), half_log_det_z[k], atol=1e-8, rtol=0)
    # not a constant: it follows the H-C-H angles
    values = constraint_metric_log_det(x, constrained.constrained_atoms, masses)
    assert values.max() - values.min() > 1e-4
