"""Hybrid Monte Carlo on OpenMM's Verlet integrator: exact against quadrature at a large time step."""

import numpy as np
import openmm
import openmm.unit as unit
import pytest
from openmmtools import cache, states

from helpers import NSIGMA
from openmm_bg.simulation.hmc import SeededHMCMove, velocity_verlet

A, B, C = 1.0e5, 0.01, 20.0  # kJ/mol/nm^4, nm^2, kJ/mol/nm: a tilted double well in x, 4 kT barrier at 300 K
K = 1000.0  # harmonic in y and z
MASS = 12.0
T = 300.0


def tilted_double_well(constraint: bool = False) -> openmm.System:
    system = openmm.System()
    system.addParticle(MASS)
    force = openmm.CustomExternalForce(f"{A}*(x^2-{B})^2 + {C}*x + 0.5*{K}*(y^2+z^2)")
    force.addParticle(0, [])
    system.addForce(force)
    if constraint:
        system.addParticle(MASS)
        system.addConstraint(0, 1, 0.1)
    return system


def quadrature_moments() -> tuple[float, float, float]:
    """<x>, <x^2> and P(x > 0) of exp(-(A (x^2 - B)^2 + C x) / kT) on a fine grid."""
    x = np.linspace(-0.6, 0.6, 200001)
    kT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin) * T
    w = np.exp(-(A * (x**2 - B) ** 2 + C * x) / kT)
    w /= w.sum()
    return float(np.sum(w * x)), float(np.sum(w * x * x)), float(np.sum(w[x > 0]))


def sample(move: SeededHMCMove, n_applications: int, system=None) -> np.ndarray:
    thermo = states.ThermodynamicState(system or tilted_double_well(), T * unit.kelvin)
    sampler = states.SamplerState(np.array([[-0.1, 0.0, 0.0]]) * unit.nanometer)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"), capacity=1)
    xs = []
    for _ in range(n_applications):
        move.apply(thermo, sampler, context_cache)
        xs.append(sampler.positions[0].value_in_unit(unit.nanometer)[0])
    return np.array(xs)


def block_error(values: np.ndarray, n_blocks: int = 20) -> float:
    blocks = np.array([b.mean() for b in np.array_split(values, n_blocks)])
    return float(blocks.std(ddof=1) / np.sqrt(n_blocks))


def test_hmc_samples_the_exact_distribution_at_a_large_time_step():
    """50 fs steps on a well whose period is 240 fs: about a third of the trajectories
    are rejected, and <x>, <x^2> and P(x > 0) still match quadrature within NSIGMA block
    standard errors (20 blocks).  Computing the energies with OpenMM's leapfrog half-step
    velocities instead of the synchronised ones biases these by many standard errors."""
    move = SeededHMCMove(timestep=0.05, n_steps=20, trajectory_steps=10, seed=11)
    x = sample(move, 6000)
    acceptance = move.n_accepted / move.n_proposed
    assert 0.4 < acceptance < 0.95, acceptance
    mean, second, positive = quadrature_moments()
    for name, values, exact in (("<x>", x, mean), ("<x^2>", x * x, second), ("P(x>0)", (x > 0).astype(float), positive)):
        assert abs(values.mean() - exact) < NSIGMA * block_error(values), (name, values.mean(), exact, block_error(values))
    # the wells both hold samples, so the test sees the barrier crossings
    assert 0.05 < (x > 0).mean() < 0.95


def test_trajectories_are_velocity_verlet_reversible_and_symplectic():
    """The leapfrog integrator with the half kicks is velocity Verlet: running back from
    the end point with reversed velocities returns to the start (to rounding), which
    leapfrog velocities taken as synchronous do not, and the energy error shrinks as dt^2."""
    system = tilted_double_well()
    errors = []
    for dt in (0.01, 0.005):
        integrator = openmm.VerletIntegrator(dt)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        x0 = np.array([[-0.08, 0.01, -0.02]])
        context.setPositions(x0)
        start = context.getState(getEnergy=True, getForces=True)
        f0 = start.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        u0 = start.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        v0 = np.array([[0.6, -0.3, 0.2]])
        half_kick = np.full((1, 1), 0.5 * dt / MASS)
        x1, v1, u1, f1 = velocity_verlet(context, integrator, v0, f0, half_kick, int(round(0.2 / dt)))
        errors.append(abs(u1 + 0.5 * MASS * np.sum(v1**2) - u0 - 0.5 * MASS * np.sum(v0**2)))
        x2, v2, _, _ = velocity_verlet(context, integrator, -v1, f1, half_kick, int(round(0.2 / dt)))
        np.testing.assert_allclose(x2, x0, atol=1e-10)
        np.testing.assert_allclose(-v2, v0, atol=1e-9)
    assert 2.5 < errors[0] / errors[1] < 6.0, errors


def test_hmc_is_reproducible_and_serialises_its_stream():
    a = SeededHMCMove(timestep=0.03, n_steps=20, trajectory_steps=10, seed=5)
    xa = sample(a, 30)
    b = SeededHMCMove(timestep=0.03, n_steps=20, trajectory_steps=10, seed=5)
    np.testing.assert_array_equal(sample(b, 30), xa)
    restored = SeededHMCMove.__new__(SeededHMCMove)
    restored.__setstate__(a.__getstate__())
    assert restored.statistics == a.statistics and restored.n_applied == 30 and restored.force_evaluations == 1 + 2 * 11


def test_hmc_refuses_what_it_cannot_sample_exactly():
    with pytest.raises(ValueError, match="multiple of trajectory_steps"):
        SeededHMCMove(n_steps=25, trajectory_steps=10)
    with pytest.raises(ValueError, match="timestep"):
        SeededHMCMove(timestep=-0.001)
    with pytest.raises(ValueError, match="without constraints"):
        sample(SeededHMCMove(timestep=0.01, n_steps=10, trajectory_steps=10), 1, system=tilted_double_well(constraint=True))
    system = tilted_double_well()
    system.addParticle(0.0)
    with pytest.raises(ValueError, match="massless"):
        thermo = states.ThermodynamicState(system, T * unit.kelvin)
        sampler = states.SamplerState(np.zeros((2, 3)) * unit.nanometer)
        SeededHMCMove(timestep=0.01, n_steps=10, trajectory_steps=10).apply(thermo, sampler, cache.ContextCache(capacity=1))


def test_hmc_keeps_a_cmmotionremover_exact_only_where_momentum_is_conserved():
    """With a CMMotionRemover, velocities are drawn with zero total momentum, which the
    remover then leaves alone in a translation-invariant molecule (alanine dipeptide:
    every trajectory of 2 fs steps is accepted at high rate and the energy is finite);
    a potential that pins the particle in space is refused instead of sampled wrongly."""
    from openmm_bg.molecules.systems import get_system

    mol = get_system("ala2-vacuum")
    assert any(isinstance(f, openmm.CMMotionRemover) for f in mol.system.getForces())
    thermo = states.ThermodynamicState(mol.system, T * unit.kelvin)
    sampler = states.SamplerState(np.asarray(mol.positions) * unit.nanometer)
    move = SeededHMCMove(timestep=0.001, n_steps=100, trajectory_steps=20, seed=1)
    move.apply(thermo, sampler, cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"), capacity=1))
    assert move.n_accepted >= 4
    velocities = sampler.velocities.value_in_unit(unit.nanometer / unit.picosecond)
    masses = np.array([mol.system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(mol.n_atoms)])
    assert np.abs((masses[:, None] * velocities).sum(axis=0)).max() < 1e-8

    pinned = tilted_double_well()
    pinned.addForce(openmm.CMMotionRemover())
    with pytest.raises(ValueError, match="CMMotionRemover"):
        sample(SeededHMCMove(timestep=0.01, n_steps=10, trajectory_steps=10), 1, system=pinned)
