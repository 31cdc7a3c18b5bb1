"""Parallel tempering with openmmtools' ``ReplicaExchangeSampler``, resumable, and its read-back.

Replicas run :class:`~openmm_bg.data.moves.SeededLangevinMove` segments and
exchange temperatures with the "swap-all" scheme.  The sampler writes an
openmmtools NetCDF file ``storage`` plus ``<stem>_checkpoint.nc`` holding positions
at every ``checkpoint_interval`` iterations.  Calling
:func:`run_parallel_tempering` again on an existing file resumes it.

openmmtools draws its swap decisions from NumPy's global generator; this module
seeds it from ``seed`` (and the iteration at which a run resumes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import openmm
import openmm.unit as unit

from .moves import SeededLangevinMove, derive_seed

__all__ = ["run_parallel_tempering", "read_parallel_tempering", "TemperingData", "energy_evaluations"]


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
) -> Path:
    """Run (or resume) parallel tempering until ``n_iterations`` iterations are stored.

    Parameters
    ----------
    system : openmm.System
        Without barostat; masses may be repartitioned (see
        :func:`~openmm_bg.data.moves.repartition_hydrogen_mass`).
    positions : ndarray, shape (n_atoms, 3), nm
        Starting positions of every replica.
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
        :class:`~openmm_bg.data.moves.SeededLangevinMove`).  With 1 fs steps and a weak
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

    Returns
    -------
    Path
        ``storage``.
    """
    from openmmtools import cache, states
    from openmmtools.multistate import MultiStateReporter, ReplicaExchangeSampler

    storage = Path(storage)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    if temperatures.ndim != 1 or len(temperatures) < 2 or np.any(np.diff(temperatures) <= 0):
        raise ValueError(f"temperatures must be at least two strictly increasing values in K, got {temperatures.tolist()}")
    xyz = np.asarray(positions, dtype=np.float64)
    if xyz.shape != (system.getNumParticles(), 3):
        raise ValueError(f"positions must have shape ({system.getNumParticles()}, 3), got {xyz.shape}")
    if int(n_iterations) < 1:
        raise ValueError(f"n_iterations must be positive, got {n_iterations}")

    logging.getLogger("openmmtools").setLevel(logging.ERROR)
    platform_obj = openmm.Platform.getPlatformByName(platform)
    # Reference/CPU contexts are cheap; one context cache for dynamics, one for energies.
    context_cache = cache.ContextCache(platform=platform_obj, capacity=2)
    energy_cache = cache.ContextCache(platform=platform_obj, capacity=2)

    if storage.exists():
        if not resume:
            raise FileExistsError(f"{storage} exists; pass resume=True to continue it")
        reporter = MultiStateReporter(str(storage), open_mode="a", checkpoint_interval=checkpoint_interval)
        sampler = ReplicaExchangeSampler.from_storage(reporter)
        stored_temperatures = np.array([s.temperature.value_in_unit(unit.kelvin) for s in sampler._thermodynamic_states])
        if not np.allclose(stored_temperatures, temperatures):
            raise ValueError(f"{storage} was run at {stored_temperatures.tolist()} K, not {temperatures.tolist()} K")
        start = sampler.iteration
        # Fresh random streams on resume: the stored moves would replay the first segment's noise.
        for move in _moves(sampler.mcmc_moves):
            move.seed = derive_seed(seed, start)
        np.random.seed(derive_seed(seed, start, 1))
        sampler.number_of_iterations = max(int(n_iterations), start)
    else:
        storage.parent.mkdir(parents=True, exist_ok=True)
        np.random.seed(derive_seed(seed, 0, 1))
        move = SeededLangevinMove(timestep, collision_rate, steps_per_iteration, seed=seed)
        sampler = ReplicaExchangeSampler(
            mcmc_moves=move, number_of_iterations=int(n_iterations), replica_mixing_scheme="swap-all",
            online_analysis_interval=None,
        )
        thermodynamic_states = [states.ThermodynamicState(system, t * unit.kelvin) for t in temperatures]
        sampler_state = states.SamplerState(xyz * unit.nanometer)
        reporter = MultiStateReporter(str(storage), checkpoint_interval=checkpoint_interval)
        sampler.create(thermodynamic_states, sampler_state, reporter)
        start = 0
    sampler.energy_context_cache = energy_cache
    sampler.sampler_context_cache = context_cache

    bar = _progress(total=int(n_iterations), initial=start, enabled=progress, desc=f"PT {storage.name}")
    try:
        while sampler.iteration < sampler.number_of_iterations:
            before = sampler.iteration
            sampler.run(min(chunk, sampler.number_of_iterations - before))
            bar.update(sampler.iteration - before)
    finally:
        bar.close()
        reporter.close()
    return storage


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
    """

    temperatures: np.ndarray
    replica_states: np.ndarray
    reduced_potentials: np.ndarray
    positions: np.ndarray | None
    checkpoint_iterations: np.ndarray
    steps_per_iteration: int

    @property
    def n_iterations(self) -> int:
        """Stored iterations, including iteration 0."""
        return len(self.replica_states)

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
    return TemperingData(temperatures, replica_states, energies, xyz, stored, steps)


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
