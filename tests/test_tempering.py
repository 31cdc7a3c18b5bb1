"""Parallel tempering: swaps come from a local generator, reproducible from the seed, global RNG untouched."""

import numpy as np
import openmm
import pytest

from openmm_bg.simulation.tempering import _swap_all, read_parallel_tempering, run_parallel_tempering


def double_well() -> openmm.System:
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce("2.5e5*(x^2-0.01)^2 + 0.5*1000*(y^2+z^2)")
    force.addParticle(0, [])
    system.addForce(force)
    return system


def run(path, n_iterations, seed):
    run_parallel_tempering(double_well(), np.array([[-0.1, 0.0, 0.0]]), [300.0, 600.0, 1200.0], path, n_iterations,
                           steps_per_iteration=20, seed=seed, progress=False)
    return read_parallel_tempering(path)


def test_runs_repeat_from_their_seed_and_leave_the_global_generator_alone(tmp_path):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b, c = run(tmp_path / "a.nc", 12, seed=7), run(tmp_path / "b.nc", 12, seed=7), run(tmp_path / "c.nc", 12, seed=8)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a.replica_states, b.replica_states)
    np.testing.assert_array_equal(a.reduced_potentials, b.reduced_potentials)
    assert not np.array_equal(a.reduced_potentials, c.reduced_potentials)
    # resuming is as reproducible as a fresh run: 6 then 12 iterations, twice
    for name in ("r1.nc", "r2.nc"):
        run(tmp_path / name, 6, seed=7)
    resumed = [run(tmp_path / name, 12, seed=7) for name in ("r1.nc", "r2.nc")]
    assert resumed[0].n_iterations == 13
    np.testing.assert_array_equal(resumed[0].replica_states, resumed[1].replica_states)
    np.testing.assert_array_equal(resumed[0].reduced_potentials, resumed[1].reduced_potentials)
    np.testing.assert_array_equal(resumed[0].replica_states[:7], a.replica_states[:7])


def test_swap_all_keeps_a_permutation_and_accepts_by_metropolis():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4, 4))
    states = np.arange(4)
    accepted, proposed = np.zeros((4, 4)), np.zeros((4, 4))
    _swap_all(np.random.default_rng(1), states, u, accepted, proposed)
    assert sorted(states) == [0, 1, 2, 3] and proposed.sum() == 2 * 4**3 and (accepted <= proposed).all()
    # equal energies in every state: every swap is accepted
    states, accepted, proposed = np.arange(3), np.zeros((3, 3)), np.zeros((3, 3))
    _swap_all(np.random.default_rng(2), states, np.zeros((3, 3)), accepted, proposed)
    np.testing.assert_array_equal(accepted, proposed)


def test_bad_counts_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="n_iterations must be an integer >= 1, got 0"):
        run(tmp_path / "x.nc", 0, seed=1)


def harmonic(k: float = 47_000.0) -> openmm.System:
    """One particle of 12 Da in an isotropic well of k kJ/mol/nm^2 (period about 100 fs)."""
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce(f"0.5*{k}*(x^2+y^2+z^2)")
    force.addParticle(0, [])
    system.addForce(force)
    return system


def test_ghmc_replicas_sample_the_exact_potential_energy(tmp_path):
    """Metropolized dynamics in every replica, 10 fs steps (a tenth of the period): the mean
    reduced potential in each state is 3/2 exactly; checked within NSIGMA standard errors
    (samples 200 fs apart, after fresh velocities, are nearly independent)."""
    from helpers import NSIGMA

    path = tmp_path / "ghmc.nc"
    run_parallel_tempering(harmonic(), np.array([[0.01, 0.0, 0.0]]), [300.0, 450.0, 600.0], path, 400,
                           steps_per_iteration=20, timestep=0.01, seed=3, progress=False, integrator="ghmc")
    data = read_parallel_tempering(path)
    u = data.reduced_potentials[1:]  # (iteration, replica, state)
    states = data.replica_states[1:]
    for k in range(3):
        own = u[:, :, k][states == k]
        assert abs(own.mean() - 1.5) < NSIGMA * own.std() / np.sqrt(own.size), (k, own.mean())
    with pytest.raises(ValueError, match="was run with .*SeededGHMCMove.*not SeededLangevinMove"):
        run_parallel_tempering(harmonic(), np.array([[0.01, 0.0, 0.0]]), [300.0, 450.0, 600.0], path, 401,
                               steps_per_iteration=20, timestep=0.01, seed=3, progress=False)
    with pytest.raises(ValueError, match="integrator must be one of"):
        run_parallel_tempering(harmonic(), np.array([[0.01, 0.0, 0.0]]), [300.0, 450.0], tmp_path / "y.nc", 2, integrator="verlet")


def test_hmc_replicas_sample_the_exact_potential_energy_from_one_start_per_state(tmp_path):
    """Hybrid Monte Carlo in every replica (10 fs steps, 20-step trajectories), each replica
    started from its own configuration: the mean reduced potential in each state is 3/2
    within NSIGMA standard errors, and a resumed run refuses another integrator."""
    from helpers import NSIGMA

    path = tmp_path / "hmc.nc"
    starts = np.array([[[0.01, 0.0, 0.0]], [[0.0, 0.02, 0.0]], [[0.0, 0.0, -0.03]]])
    run_parallel_tempering(harmonic(), starts, [300.0, 450.0, 600.0], path, 400, steps_per_iteration=40,
                           trajectory_steps=20, timestep=0.01, seed=3, progress=False, integrator="hmc")
    data = read_parallel_tempering(path)
    np.testing.assert_allclose(data.positions[0, :, 0], starts[:, 0], atol=1e-6)
    u = data.reduced_potentials[1:]
    states = data.replica_states[1:]
    for k in range(3):
        own = u[:, :, k][states == k]
        assert abs(own.mean() - 1.5) < NSIGMA * own.std() / np.sqrt(own.size), (k, own.mean())
    assert data.steps_per_iteration == 40
    with pytest.raises(ValueError, match="was run with .*SeededHMCMove.*not SeededGHMCMove"):
        run_parallel_tempering(harmonic(), starts[0], [300.0, 450.0, 600.0], path, 401, steps_per_iteration=40,
                               timestep=0.01, seed=3, progress=False, integrator="ghmc")
    with pytest.raises(ValueError, match=r"positions must have shape \(1, 3\) or \(3, 1, 3\)"):
        run_parallel_tempering(harmonic(), starts[:2], [300.0, 450.0, 600.0], tmp_path / "z.nc", 2, integrator="hmc")
