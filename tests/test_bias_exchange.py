"""Replica exchange along a flattening torsion bias (openmm_bg.simulation.bias_exchange)."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import pytest
from scipy import integrate

from openmm_bg.reference.estimates import tempering_free_energy_difference
from openmm_bg.simulation.bias_exchange import (
    bias_reduced_potentials,
    dihedral_pair_flattening_force,
    evaluate_fourier_series,
    fourier_series_fit,
    run_bias_exchange,
    split_bias_energies,
    torsion_flattening_force,
    weighted_dihedral_surface,
)
from openmm_bg.simulation.tempering import read_parallel_tempering
from openmm_bg.units import kt_kjmol

T = 300.0
KT = kt_kjmol(T)


def test_fourier_fit_recovers_a_series_exactly():
    rng = np.random.default_rng(0)
    c = rng.normal(size=2 * 4 + 1)
    x = np.linspace(-np.pi, np.pi, 40, endpoint=False)
    np.testing.assert_allclose(fourier_series_fit(x, evaluate_fourier_series(c, x), 4), c, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(angles=np.zeros(5), values=np.zeros(5), n_terms=3), "at least 7 points"),
        (dict(angles=np.zeros(9), values=np.r_[np.zeros(8), np.nan], n_terms=3), "finite"),
        (dict(angles=np.zeros(9), values=np.zeros(8), n_terms=3), "equal length"),
    ],
)
def test_fourier_fit_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fourier_series_fit(**kwargs)


# A four-atom chain with stiff bonds and angles and a torsion potential U(phi): with bond lengths
# and angles fixed, the volume element does not depend on phi, so phi's marginal is exp(-U(phi)/kT)
# whatever the bonds and angles do, and dF(phi > 0 vs phi < 0) is a one-dimensional quadrature.
# U has barriers of about 10 kT at phi = 0 and pi and wells at -pi/2 and +pi/2, the latter 3 kT higher.

def torsion_energy_kT(phi):
    return 5.0 * (1.0 + np.cos(2.0 * phi)) + 1.5 * np.sin(phi)


def exact_delta_f():
    p_pos = integrate.quad(lambda x: np.exp(-torsion_energy_kT(x)), 0.0, np.pi)[0]
    p_neg = integrate.quad(lambda x: np.exp(-torsion_energy_kT(x)), -np.pi, 0.0)[0]
    return -np.log(p_pos / p_neg)


def four_atom_chain():
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    for i in range(3):
        bonds.addBond(i, i + 1, 0.15, 2.0e5)
    angles = openmm.HarmonicAngleForce()
    for i in range(2):
        angles.addAngle(i, i + 1, i + 2, np.deg2rad(110.0), 500.0)
    torsion = openmm.CustomTorsionForce(f"{KT!r}*(5*(1 + cos(2*theta)) + 1.5*sin(theta))")
    torsion.addTorsion(0, 1, 2, 3, [])
    for force in (bonds, angles, torsion):
        system.addForce(force)
    return system, chain_positions(-np.pi / 2)  # the lower well


def chain_positions(phi, angle=np.deg2rad(110.0), bond=0.15):
    """Four atoms with bond lengths ``bond``, bond angles ``angle`` and dihedral ``phi``."""
    return np.array([
        [bond * np.sin(angle), bond * np.cos(angle), 0.0],
        [0.0, 0.0, 0.0],
        [0.0, bond, 0.0],
        [bond * np.sin(angle) * np.cos(phi), bond - bond * np.cos(angle), -bond * np.sin(angle) * np.sin(phi)],
    ])


def dihedral(xyz):
    b0, b1, b2 = xyz[..., 0, :] - xyz[..., 1, :], xyz[..., 2, :] - xyz[..., 1, :], xyz[..., 3, :] - xyz[..., 2, :]
    b1n = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - np.sum(b0 * b1n, -1, keepdims=True) * b1n
    w = b2 - np.sum(b2 * b1n, -1, keepdims=True) * b1n
    x = np.sum(v * w, -1)
    y = np.sum(np.cross(b1n, v) * w, -1)
    return np.arctan2(y, x)


def openmm_dihedral(system, xyz):
    """phi as OpenMM measures it: from a CustomTorsionForce whose energy is theta."""
    probe = openmm.CustomTorsionForce("theta")
    probe.addTorsion(0, 1, 2, 3, [])
    s = openmm.System()
    for _ in range(4):
        s.addParticle(12.0)
    s.addForce(probe)
    context = openmm.Context(s, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def test_test_system_starts_in_the_lower_well_and_dihedral_convention_matches_openmm():
    system, xyz = four_atom_chain()
    assert openmm_dihedral(system, xyz) == pytest.approx(dihedral(xyz), abs=1e-6)
    assert dihedral(xyz) == pytest.approx(-np.pi / 2, abs=1e-6)


def profile_kT(phi):
    return torsion_energy_kT(phi)


def test_flattening_force_matches_its_series_and_is_never_positive():
    grid = np.linspace(-np.pi, np.pi, 72, endpoint=False) + np.pi / 72
    force, c = torsion_flattening_force([0, 1, 2, 3], grid, profile_kT(grid), T, n_terms=4)
    values = evaluate_fourier_series(c, np.linspace(-np.pi, np.pi, 1001))
    assert values.max() == pytest.approx(0.0, abs=1e-9) and values.min() < -9 * KT
    # the fit flattens the profile: F + V/kT is constant to within the fit's resolution
    np.testing.assert_allclose(profile_kT(grid) + evaluate_fourier_series(c, grid) / KT,
                               np.full_like(grid, (profile_kT(grid) + evaluate_fourier_series(c, grid) / KT).mean()), atol=1e-6)
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    rng = np.random.default_rng(1)
    for _ in range(5):
        xyz = rng.normal(scale=0.2, size=(4, 3))
        context.setPositions(xyz)
        for scale in (0.0, 0.4, 1.0):
            context.setParameter("bias_scale", scale)
            energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            assert energy == pytest.approx(scale * evaluate_fourier_series(c, dihedral(xyz)), abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(atoms=[0, 1, 2, 2]), ValueError, "four distinct"),
        (dict(fraction=0.0), ValueError, "fraction"),
    ],
)
def test_flattening_force_bad_input(kwargs, error, message):
    grid = np.linspace(-np.pi, np.pi, 36, endpoint=False)
    args = dict(atoms=[0, 1, 2, 3], angles=grid, free_energy_kT=profile_kT(grid), temperature=T)
    with pytest.raises(error, match=message):
        torsion_flattening_force(**{**args, **kwargs})


def _bias(n_terms=6, fraction=1.0, wrong=False):
    grid = np.linspace(-np.pi, np.pi, 72, endpoint=False) + np.pi / 72
    # a deliberately poor profile: shifted by 0.1 rad and 80 % of the barriers, leaving ~2 kT barriers on top
    profile = profile_kT(grid) if not wrong else 0.8 * profile_kT(grid + 0.1)
    return torsion_flattening_force([0, 1, 2, 3], grid, profile, T, n_terms=n_terms, fraction=fraction)


def test_run_bad_input(tmp_path):
    system, xyz = four_atom_chain()
    force, _ = _bias()
    with pytest.raises(ValueError, match="strictly increasing"):
        run_bias_exchange(system, xyz, force, [0.0, 0.0], T, tmp_path / "a.nc", 2, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        run_bias_exchange(system, np.full((4, 3), np.nan), force, [0.0, 1.0], T, tmp_path / "b.nc", 2, progress=False)
    other = openmm.CustomTorsionForce("k*theta")
    other.addGlobalParameter("k", 1.0)
    with pytest.raises(ValueError, match="no global parameter 'bias_scale'"):
        run_bias_exchange(system, xyz, other, [0.0, 1.0], T, tmp_path / "c.nc", 2, progress=False)


def test_stored_energies_are_rebuilt_from_energy_and_torsion_and_resume_checks_scales(tmp_path):
    system, xyz = four_atom_chain()
    force, c = _bias()
    scales = [0.0, 0.5, 1.0]
    path = tmp_path / "run.nc"
    run_bias_exchange(system, xyz, force, scales, T, path, 3, steps_per_iteration=20, timestep=0.001, seed=3, progress=False)
    run_bias_exchange(system, xyz, force, scales, T, path, 5, steps_per_iteration=20, timestep=0.001, seed=3, progress=False)
    data = read_parallel_tempering(path)
    assert data.n_iterations == 6 and np.allclose(data.bias_scales, scales)
    assert system.getNumForces() == 3  # the caller's system is not modified
    U, V, misfit = split_bias_energies(data.reduced_potentials, scales, T)
    assert misfit < 1e-8
    np.testing.assert_allclose(bias_reduced_potentials(U, V, scales, T), data.reduced_potentials, atol=1e-8)
    # the bias is the series at the stored (float32) positions
    np.testing.assert_allclose(V, evaluate_fourier_series(c, dihedral(data.positions.astype(np.float64))), atol=1e-3)
    # a matrix that is not linear in the scales is caught
    assert split_bias_energies(data.reduced_potentials + np.array([0.0, 0.01, 0.0]), scales, T)[2] > 1e-3
    with pytest.raises(ValueError, match="bias scales"):
        run_bias_exchange(system, xyz, force, [0.0, 0.4, 1.0], T, path, 7, steps_per_iteration=20, seed=3, progress=False)


def _estimate(tmp_path, wrong, n_iterations, seed):
    system, xyz = four_atom_chain()
    force, c = _bias(wrong=wrong)
    scales = np.linspace(0.0, 1.0, 4)
    path = tmp_path / f"run-{wrong}-{seed}.nc"
    run_bias_exchange(system, xyz, force, scales, T, path, n_iterations, steps_per_iteration=50, timestep=0.002,
                      seed=seed, progress=False)
    data = read_parallel_tempering(path)
    phi = data.by_state(dihedral(data.positions.astype(np.float64)))[20:]
    u = data.by_state(data.reduced_potentials)[20:]
    unbiased_phi = phi[:, 0]
    return tempering_free_energy_difference([u], [phi < 0], [phi > 0], block_length=50, n_bootstrap=100, seed=0), unbiased_phi


def test_bias_exchange_reproduces_the_quadrature_free_energy(tmp_path):
    """dF by MBAR over the bias states agrees with quadrature within 3 bootstrap sigma, from a
    start in the lower well; the unbiased state alone, run as long, would not cross a 10 kT barrier."""
    result, unbiased_phi = _estimate(tmp_path, False, 600, seed=5)
    truth = exact_delta_f()
    assert abs(result.delta_f - truth) < 3 * result.bootstrap_error, (result.delta_f, result.bootstrap_error, truth)
    assert result.bootstrap_error < 0.25
    # the unbiased state did see both wells, carried down by swaps
    assert (unbiased_phi > 0).any() and (unbiased_phi < 0).any()


@pytest.mark.slow
def test_a_poor_profile_still_gives_the_exact_answer(tmp_path):
    """The profile only sets the speed: 80 % of the barriers, shifted by 0.1 rad, still agrees with
    quadrature within 3 bootstrap sigma (3000 iterations, about 90 s)."""
    result, _ = _estimate(tmp_path, True, 3000, seed=5)
    truth = exact_delta_f()
    assert abs(result.delta_f - truth) < 3 * result.bootstrap_error, (result.delta_f, result.bootstrap_error, truth)
    assert result.bootstrap_error < 0.3


def place(a, b, c, bond, angle, torsion):
    """Position of atom d with |cd| = bond, angle bcd = angle and dihedral abcd = torsion (NeRF)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion), bond * np.sin(angle) * np.sin(torsion)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def five_atom_chain(phi, psi):
    a = np.deg2rad(110.0)
    xyz = [np.array([0.1, 0.1, 0.0]), np.zeros(3), np.array([0.15, 0.0, 0.0])]
    xyz.append(place(*xyz[0:3], 0.15, a, phi))
    xyz.append(place(*xyz[1:4], 0.15, a, psi))
    return np.array(xyz)


def test_dihedral_pair_force_interpolates_its_table_and_wraps():
    rng = np.random.default_rng(4)
    n = 12
    F = rng.uniform(0.0, 10.0, size=(n, n))
    force, bias = dihedral_pair_flattening_force([0, 1, 2, 3], [1, 2, 3, 4], F, T, cap_kT=8.0)
    assert bias.max() == pytest.approx(0.0) and bias.min() == pytest.approx(-8.0 * KT)
    np.testing.assert_allclose(bias, -KT * np.minimum(F - F.min(), 8.0))
    system = openmm.System()
    for _ in range(5):
        system.addParticle(12.0)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    centres = -np.pi + (np.arange(n) + 0.5) * 2 * np.pi / n
    for i, j in [(0, 0), (3, 7), (n - 1, 2), (5, n - 1)]:
        xyz = five_atom_chain(centres[i], centres[j])
        assert dihedral(xyz[:4]) == pytest.approx(centres[i], abs=1e-9)
        context.setPositions(xyz)
        for scale in (1.0, 0.25):
            context.setParameter("bias_scale", scale)
            energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            assert energy == pytest.approx(scale * bias[i, j], abs=1e-6)
    # periodic: the spline is continuous across phi = +-pi (between the last and first cell centres)
    context.setParameter("bias_scale", 1.0)
    energies = []
    for phi in (np.pi - 1e-4, -np.pi + 1e-4):
        context.setPositions(five_atom_chain(phi, centres[3]))
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert energies[0] == pytest.approx(energies[1], abs=0.05)


def test_dihedral_pair_force_bad_input():
    with pytest.raises(ValueError, match="square grid"):
        dihedral_pair_flattening_force([0, 1, 2, 3], [1, 2, 3, 4], np.zeros((6, 5)), T)
    with pytest.raises(ValueError, match="finite"):
        dihedral_pair_flattening_force([0, 1, 2, 3], [1, 2, 3, 4], np.full((6, 6), np.inf), T)
    with pytest.raises(ValueError, match="psi_atoms"):
        dihedral_pair_flattening_force([0, 1, 2, 3], [1, 2, 3, 3], np.zeros((6, 6)), T)


def test_weighted_surface_recovers_a_known_density():
    """Samples from p(phi, psi) ~ exp(-2 cos(phi) - cos(psi)): the surface is F up to a constant, within noise."""
    rng = np.random.default_rng(2)
    phi, psi = rng.uniform(-np.pi, np.pi, size=(2, 400_000))
    log_w = -2 * np.cos(phi) - np.cos(psi)
    F = weighted_dihedral_surface(phi, psi, np.exp(log_w - log_w.max()), n_bins=12, smoothing_bins=0)
    # the cell average of exp(-F) differs from its centre value; compare with the cell-integrated truth
    fine = np.linspace(-np.pi, np.pi, 12 * 40, endpoint=False) + np.pi / (12 * 40)
    cell = lambda f: np.log(np.exp(-f(fine)).reshape(12, 40).mean(1))  # noqa: E731
    truth = -(cell(lambda x: 2 * np.cos(x))[:, None] + cell(np.cos)[None, :])
    truth -= truth.min()
    np.testing.assert_allclose(F, truth, atol=0.1)
    with pytest.raises(ValueError, match="sum to zero"):
        weighted_dihedral_surface(phi, psi, np.zeros_like(phi))
