"""Parallel tempering with openmmtools' ``ReplicaExchangeSampler``, resumable, and its read-back.

Replicas run :class:`~openmm_bg.simulation.langevin.SeededLangevinMove` segments and
exchange temperatures with the "swap-all" scheme.  The sampler writes an
openmmtools NetCDF file ``storage`` plus ``<stem>_checkpoint.nc`` holding positions
at every ``checkpoint_interval`` iterations.  Calling
:func:`run_parallel_tempering` again on an existing file resumes it.

openmmtools draws its swap decisions from NumPy's global generator (or numba's, which
no seed reaches).  The sampler here draws them from a local generator seeded by
``seed`` and the iteration number, and leaves the global state alone.  A run is
reproducible from its seed; a resumed run is too, given the iteration it resumes at
(the dynamics then continue with seeds derived from ``seed`` and that iteration).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import openmm
import openmm.unit as unit

from .._validation import ensure_count
from .hmc import SeededHMCMove
from .langevin import SeededGHMCMove, SeededLangevinMove, derive_seed

__all__ = ["run_parallel_tempering", "read_parallel_tempering", "TemperingData", "energy_evaluations", "INTEGRATORS"]

#: the replica dynamics run_parallel_tempering offers
INTEGRATORS = {"langevin": SeededLangevinMove, "ghmc": SeededGHMCMove, "hmc": SeededHMCMove}


def run_parallel_tempering(
    system: openmm.System,
    positions: np.ndarray,
    temperatures: Sequence[float],
    storage: str | os.PathLike,
    n_iterations: int,
    *,
    steps_per_iteration: int = 500,
    timestep: float = 0.002,
    collision_rate: float = 10.0,
    platform: str = "Reference",
    checkpoint_interval: int = 1,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    chunk: int = 100,
    integrator: str = "langevin",
    trajectory_steps: int = 50,
) -> Path:
    """Run (or resume) parallel tempering until ``n_iterations`` iterations are stored.

    Parameters
    ----------
    system : openmm.System
        Without barostat; masses may be repartitioned (see
        :func:`~openmm_bg.simulation.langevin.repartition_hydrogen_mass`).
    positions : ndarray, shape (n_atoms, 3) or (n_temperatures, n_atoms, 3), nm
        Starting positions of every replica, or of the replica at each temperature (to
        continue an earlier run from its last configurations).
    temperatures : sequence of float, K
        One replica per temperature, strictly increasing.
    storage : path
        NetCDF file (``.nc``); created, or resumed when it exists and ``resume``.
    n_iterations : int
        Total number of iterations wanted (each: dynamics for every replica, then swaps).
    steps_per_iteration : int
    timestep : float, ps
    collision_rate : float, 1/ps
        Each iteration redraws Maxwell-Boltzmann velocities (see
        :class:`~openmm_bg.simulation.langevin.SeededLangevinMove`).  With 1 fs steps and a weak
        1/ps, the redraws heat the configurations: on ala2-vacuum the 300 K replica's mean
        potential energy in phi < 0 came out 0.25 kT above plain MD; at 10/ps it did not
        (``tests/test_data.py::test_tempering_energies_agree_with_plain_md``).
    platform : str
    checkpoint_interval : int
        Positions are stored every this many iterations.
    seed : int
    resume : bool
        If False, an existing ``storage`` is an error.
    progress : bool
        Show a tqdm progress bar.
    chunk : int
        Iterations between progress updates.
    integrator : str
        ``"langevin"`` (:class:`~openmm_bg.simulation.langevin.SeededLangevinMove`) or
        ``"ghmc"`` (:class:`~openmm_bg.simulation.langevin.SeededGHMCMove`: Metropolized, so
        exact whatever the time step; about 4 times slower per step) or ``"hmc"``
        (:class:`~openmm_bg.simulation.hmc.SeededHMCMove`: hybrid Monte Carlo on OpenMM's
        native Verlet integrator, exact too, and 3-4 times faster per step than GHMC on
        the Reference platform).  A resumed run keeps the integrator it was created with;
        asking for another is an error.
    trajectory_steps : int
        For ``"hmc"``: steps per trajectory; ``steps_per_iteration`` must be a multiple.

    Returns
    -------
    Path
        ``storage``.
    """
    from openmmtools import states

    temperatures = np.asarray(temperatures, dtype=np.float64)
    if temperatures.ndim != 1 or len(temperatures) < 2 or np.any(np.diff(temperatures) <= 0):
        raise ValueError(f"temperatures must be at least two strictly increasing values in K, got {temperatures.tolist()}")

    def make_states():
        return [states.ThermodynamicState(system, t * unit.kelvin) for t in temperatures]

    def check_stored(stored_states):
        stored = np.array([s.temperature.value_in_unit(unit.kelvin) for s in stored_states])
        if not np.allclose(stored, temperatures):
            raise ValueError(f"{storage} was run at {stored.tolist()} K, not {temperatures.tolist()} K")

    return _run_exchange(
        make_states, check_stored, system, positions, storage, n_iterations, steps_per_iteration=steps_per_iteration,
        timestep=timestep, collision_rate=collision_rate, platform=platform, checkpoint_interval=checkpoint_interval,
        seed=seed, resume=resume, progress=progress, chunk=chunk, integrator=integrator, desc="PT",
        trajectory_steps=trajectory_steps,
    )


def _run_exchange(
    make_states, check_stored, system, positions, storage, n_iterations, *, steps_per_iteration, timestep,
    collision_rate, platform, checkpoint_interval, seed, resume, progress, chunk, integrator, desc, trajectory_steps=50,
) -> Path:
    """Create or resume a seeded swap-all replica-exchange run over ``make_states()``.

    ``check_stored(states)`` raises if a resumed file's thermodynamic states are not the
    ones asked for.
    """
    from openmmtools import cache, states
    from openmmtools.multistate import MultiStateReporter

    sampler_class = _seeded_sampler_class()
    storage = Path(storage)
    xyz = np.asarray(positions, dtype=np.float64)
    n_states = len(make_states())
    if xyz.shape not in ((system.getNumParticles(), 3), (n_states, system.getNumParticles(), 3)):
        raise ValueError(f"positions must have shape ({system.getNumParticles()}, 3) or ({n_states}, "
                         f"{system.getNumParticles()}, 3) (one configuration per state), got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("positions contain NaN or infinite values")
    n_iterations = ensure_count(n_iterations, "n_iterations")
    steps_per_iteration = ensure_count(steps_per_iteration, "steps_per_iteration")
    checkpoint_interval = ensure_count(checkpoint_interval, "checkpoint_interval")
    chunk = ensure_count(chunk, "chunk")
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, got {integrator!r}")

    logging.getLogger("openmmtools").setLevel(logging.ERROR)
    platform_obj = openmm.Platform.getPlatformByName(platform)
    # Reference/CPU contexts are cheap; one context cache for dynamics, one for energies.
    context_cache = cache.ContextCache(platform=platform_obj, capacity=2)
    energy_cache = cache.ContextCache(platform=platform_obj, capacity=2)

    if storage.exists():
        if not resume:
            raise FileExistsError(f"{storage} exists; pass resume=True to continue it")
        reporter = MultiStateReporter(str(storage), open_mode="a", checkpoint_interval=checkpoint_interval)
        sampler = sampler_class.from_storage(reporter)
        check_stored(sampler._thermodynamic_states)
        start = sampler.iteration
        stored = {type(move).__name__ for move in _moves(sampler._mcmc_moves)}
        if stored != {INTEGRATORS[integrator].__name__}:
            raise ValueError(f"{storage} was run with {sorted(stored)}, not {INTEGRATORS[integrator].__name__} (integrator={integrator!r})")
        # Fresh random streams on resume: the stored moves would replay the first segment's noise.
        # (sampler.mcmc_moves is a deep copy; the moves in use are sampler._mcmc_moves.)
        for move in _moves(sampler._mcmc_moves):
            move.seed = derive_seed(seed, start)
        sampler.number_of_iterations = max(n_iterations, start)
    else:
        storage.parent.mkdir(parents=True, exist_ok=True)
        if integrator == "hmc":
            move = SeededHMCMove(timestep, steps_per_iteration, trajectory_steps, seed=seed)
        else:
            move = INTEGRATORS[integrator](timestep, collision_rate, steps_per_iteration, seed=seed)
        sampler = sampler_class(
            mcmc_moves=move, number_of_iterations=n_iterations, replica_mixing_scheme="swap-all",
            online_analysis_interval=None,
        )
        if xyz.ndim == 2:
            sampler_state = states.SamplerState(xyz * unit.nanometer)
        else:  # replica k starts in state k
            sampler_state = [states.SamplerState(x * unit.nanometer) for x in xyz]
        reporter = MultiStateReporter(str(storage), checkpoint_interval=checkpoint_interval)
        sampler.create(make_states(), sampler_state, reporter)
        start = 0
    sampler.swap_seed = int(seed)
    sampler.energy_context_cache = energy_cache
    sampler.sampler_context_cache = context_cache
    # Build the energy Context before the Langevin one, as a fresh run does: on the Reference
    # platform, a Context built later reseeds the process-wide random numbers of the dynamics.
    energy_cache.get_context(sampler._thermodynamic_states[0])

    bar = _progress(total=n_iterations, initial=start, enabled=progress, desc=f"{desc} {storage.name}")
    try:
        while sampler.iteration < sampler.number_of_iterations:
            before = sampler.iteration
            sampler.run(min(chunk, sampler.number_of_iterations - before))
            bar.update(sampler.iteration - before)
    finally:
        bar.close()
        reporter.close()
    return storage


@functools.cache
def _seeded_sampler_class():
    """openmmtools' ``ReplicaExchangeSampler`` with swap-all mixing drawn from a local generator.

    Built on first use, so that importing this module does not import openmmtools.
    """
    from openmmtools.multistate import ReplicaExchangeSampler

    class SeededReplicaExchangeSampler(ReplicaExchangeSampler):
        """Swap-all exchanges from ``numpy.random.default_rng`` seeded by ``(swap_seed, iteration)``."""

        swap_seed = 0

        def _mix_replicas(self):
            if self.replica_mixing_scheme != "swap-all":
                raise ValueError(f"only swap-all mixing is seeded here, got {self.replica_mixing_scheme!r}")
            self._n_accepted_matrix[:, :] = 0
            self._n_proposed_matrix[:, :] = 0
            rng = np.random.default_rng(derive_seed(self.swap_seed, self._iteration, 1))
            _swap_all(rng, self._replica_thermodynamic_states, self._energy_thermodynamic_states,
                      self._n_accepted_matrix, self._n_proposed_matrix)
            return self._replica_thermodynamic_states

    return SeededReplicaExchangeSampler


def _swap_all(rng: np.random.Generator, replica_states: np.ndarray, u: np.ndarray, accepted: np.ndarray, proposed: np.ndarray) -> None:
    """openmmtools' swap-all scheme, ``n_replicas**3`` Metropolis swap attempts, in place.

    Parameters
    ----------
    rng : numpy Generator
    replica_states : int ndarray, shape (n_replicas,)
        State of each replica; updated.
    u : ndarray, shape (n_replicas, n_states), kT
        Reduced potential of each replica in each state.
    accepted, proposed : ndarray, shape (n_states, n_states)
        Swap counters; incremented.
    """
    n = len(replica_states)
    pairs = rng.integers(n, size=(n**3, 2))
    log_uniform = np.log(rng.random(n**3))
    for (i, j), log_r in zip(pairs, log_uniform):
        si, sj = replica_states[i], replica_states[j]
        log_p_accept = u[i, si] + u[j, sj] - u[i, sj] - u[j, si]
        proposed[si, sj] += 1
        proposed[sj, si] += 1
        if log_p_accept >= log_r:
            replica_states[i], replica_states[j] = sj, si
            accepted[si, sj] += 1
            accepted[sj, si] += 1


def _moves(move):
    if isinstance(move, (list, tuple)):
        for m in move:
            yield from _moves(m)
    elif hasattr(move, "move_list"):
        yield from _moves(move.move_list)
    else:
        yield move


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="it")


@dataclass
class TemperingData:
    """What a parallel-tempering run stored, in plain arrays.

    Attributes
    ----------
    temperatures : ndarray, shape (n_states,), K
    replica_states : int ndarray, shape (n_iterations, n_replicas)
        Thermodynamic state of each replica at each stored iteration (iteration 0 is the start).
    reduced_potentials : ndarray, shape (n_iterations, n_replicas, n_states), kT
        Reduced potential of each replica's configuration in each state.
    positions : float32 ndarray, shape (n_checkpoints, n_replicas, n_atoms, 3), nm, or None
        Positions at the checkpoint iterations ``checkpoint_iterations``.
    checkpoint_iterations : int ndarray, shape (n_checkpoints,)
    steps_per_iteration : int
    bias_scales : ndarray, shape (n_states,), or None
        The bias scale of each state of a run by
        :func:`~openmm_bg.simulation.bias_exchange.run_bias_exchange`; None for parallel tempering.
    """

    temperatures: np.ndarray
    replica_states: np.ndarray
    reduced_potentials: np.ndarray
    positions: np.ndarray | None
    checkpoint_iterations: np.ndarray
    steps_per_iteration: int
    bias_scales: np.ndarray | None = None

    @property
    def n_iterations(self) -> int:
        """Stored iterations, including iteration 0."""
        return len(self.replica_states)

    def potential_energies(self) -> np.ndarray:
        """Potential energy (kJ/mol) of the configuration in each state, shape (n_iterations, n_states).

        From each replica's reduced potential in its own state; for temperature states only
        (a bias-exchange state's reduced potential holds its bias too).
        """
        from ..units import MOLAR_GAS_CONSTANT

        kT = MOLAR_GAS_CONSTANT * self.temperatures
        own = np.take_along_axis(self.reduced_potentials, self.replica_states[:, :, None], axis=2)[:, :, 0]
        return self.by_state(own * kT[self.replica_states])

    def by_state(self, values: np.ndarray) -> np.ndarray:
        """Reorder a per-replica array into per-state order.

        Parameters
        ----------
        values : ndarray, shape (n_iterations, n_replicas, ...)

        Returns
        -------
        ndarray, shape (n_iterations, n_states, ...)
            ``out[i, k]`` is the value of the replica that was in state ``k`` at iteration ``i``.
        """
        values = np.asarray(values)
        if values.shape[:2] != self.replica_states.shape:
            raise ValueError(f"values must start with shape {self.replica_states.shape}, got {values.shape}")
        order = np.argsort(self.replica_states, axis=1)
        return np.take_along_axis(values, order.reshape(order.shape + (1,) * (values.ndim - 2)), axis=1)


def read_parallel_tempering(storage: str | os.PathLike, positions: bool = True) -> TemperingData:
    """Read a run written by :func:`run_parallel_tempering`.

    Parameters
    ----------
    storage : path
        The main ``.nc`` file.
    positions : bool
        Also read the stored positions (can be large for big systems).

    Returns
    -------
    TemperingData
    """
    import netCDF4

    storage = Path(storage)
    if not storage.exists():
        raise OSError(f"parallel-tempering storage {storage} does not exist")
    checkpoint = storage.with_name(storage.stem + "_checkpoint" + storage.suffix)
    with netCDF4.Dataset(str(storage), "r") as nc:
        n = int(nc.variables["last_iteration"][0]) + 1
        energies = np.asarray(nc.variables["energies"][:n], dtype=np.float64)
        replica_states = np.asarray(nc.variables["states"][:n], dtype=np.int64)
        interval = int(nc.CheckpointInterval) if hasattr(nc, "CheckpointInterval") else 1
    from openmmtools.multistate import MultiStateReporter

    reporter = MultiStateReporter(str(storage), open_mode="r")
    try:
        thermodynamic_states, _ = reporter.read_thermodynamic_states()
        temperatures = np.array([s.temperature.value_in_unit(unit.kelvin) for s in thermodynamic_states])
        scales = [getattr(s, "bias_scale", None) for s in thermodynamic_states]
        moves = reporter.read_mcmc_moves()
    finally:
        reporter.close()
    steps = int(getattr(_moves_first(moves), "n_steps", 0))
    xyz = None
    stored = np.arange(0, n, interval)
    if positions:
        with netCDF4.Dataset(str(checkpoint), "r") as nc:
            n_checkpoints = min(len(stored), nc.variables["positions"].shape[0])
            xyz = np.asarray(nc.variables["positions"][:n_checkpoints], dtype=np.float32)
            stored = stored[:n_checkpoints]
    bias_scales = None if any(v is None for v in scales) else np.array(scales, dtype=np.float64)
    return TemperingData(temperatures, replica_states, energies, xyz, stored, steps, bias_scales)


def _moves_first(moves):
    return next(iter(_moves(moves)))


def energy_evaluations(n_iterations: int, n_replicas: int, steps_per_iteration: int) -> int:
    """Number of force/energy evaluations of a parallel-tempering run.

    Per iteration and replica: one force evaluation per integration step, one energy
    evaluation at the end of the segment (openmmtools reads the final state), and one
    for the swap matrix.  With temperature states only, openmmtools evaluates each
    replica's energy once and rescales it to every temperature, so the matrix costs
    ``n_replicas`` evaluations, not ``n_replicas * n_states``.

    Parameters
    ----------
    n_iterations : int
        Propagated iterations (not counting the initial iteration 0, which costs
        one matrix evaluation per replica; it is included here).
    n_replicas : int
    steps_per_iteration : int

    Returns
    -------
    int
    """
    return int(n_iterations) * int(n_replicas) * (int(steps_per_iteration) + 2) + int(n_replicas)
