"""Resumable Langevin molecular dynamics with openmmtools, writing an mdtraj trajectory.

:func:`run_md` appends ``n_frames`` frames, one every ``steps_per_frame`` steps of
``LangevinMiddleIntegrator`` (via :class:`~openmm_bg.simulation.langevin.SeededLangevinMove`),
to a DCD/XTC file and writes a PDB topology beside it.  Every ``checkpoint_every``
frames it saves the trajectory and a checkpoint ``<trajectory>.chk.npz`` (positions,
velocities, counters).  Calling it again with the same path resumes from the checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit

from .._validation import ensure_count
from .langevin import SeededLangevinMove, derive_seed
from ..molecules.trajectories import load_trajectory, save_topology, save_trajectory

__all__ = ["run_md", "checkpoint_path"]


def checkpoint_path(trajectory: str | os.PathLike) -> Path:
    """Where :func:`run_md` keeps the checkpoint of ``trajectory``."""
    trajectory = Path(trajectory)
    return trajectory.with_name(trajectory.name + ".chk.npz")


def run_md(
    system: openmm.System,
    topology,
    positions: np.ndarray,
    trajectory: str | os.PathLike,
    n_frames: int,
    *,
    temperature: float = 300.0,
    steps_per_frame: int = 500,
    timestep: float = 0.002,
    collision_rate: float = 1.0,
    platform: str = "Reference",
    box_vectors: np.ndarray | None = None,
    equilibration_steps: int = 0,
    seed: int = 0,
    checkpoint_every: int = 1000,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Run Langevin dynamics until ``trajectory`` holds ``n_frames`` frames.

    Parameters
    ----------
    system : openmm.System
    topology : mdtraj.Topology, openmm.app.Topology or path
        Written as ``<trajectory stem>.pdb`` beside the trajectory.
    positions : ndarray, shape (n_atoms, 3), nm
        Start (ignored when resuming).
    trajectory : path
        ``.dcd`` or ``.xtc`` (or any format mdtraj writes).
    n_frames : int
        Total frames wanted.
    temperature : float, K
    steps_per_frame : int
    timestep : float, ps
    collision_rate : float, 1/ps
    platform : str
    box_vectors : ndarray, shape (3, 3), nm, optional
        Periodic box; frames are written wrapped into it.
    equilibration_steps : int
        Steps run and discarded before the first frame of a new run.
    seed : int
        Seeds the initial velocities and the integrator.
    checkpoint_every : int
        Frames between writes of the trajectory and the checkpoint.
    resume : bool
        Continue an existing trajectory from its checkpoint; if False an existing file is an error.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path
        ``trajectory``.
    """
    from openmmtools import cache, states
    from tqdm.auto import tqdm

    trajectory = Path(trajectory)
    checkpoint = checkpoint_path(trajectory)
    n = system.getNumParticles()
    n_frames = ensure_count(n_frames, "n_frames")
    steps_per_frame = ensure_count(steps_per_frame, "steps_per_frame")
    thermodynamic_state = states.ThermodynamicState(system, temperature * unit.kelvin)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(platform), capacity=1)
    box_lengths = None if box_vectors is None else np.diag(np.asarray(box_vectors, dtype=np.float64))

    if trajectory.exists():
        if not resume:
            raise FileExistsError(f"{trajectory} exists; pass resume=True to continue it")
        if not checkpoint.exists():
            raise OSError(f"{trajectory} exists but its checkpoint {checkpoint} does not; cannot resume")
        saved = np.load(checkpoint)
        frames = list(load_trajectory(trajectory, topology)[: int(saved["n_frames"])].astype(np.float32))
        if len(frames) != int(saved["n_frames"]):
            raise OSError(f"{trajectory} has {len(frames)} frames, its checkpoint expects {int(saved['n_frames'])}")
        if abs(float(saved["temperature"]) - temperature) > 1e-9 or abs(float(saved["timestep"]) - timestep) > 1e-12:
            raise ValueError(
                f"{trajectory} was run at {float(saved['temperature'])} K with {float(saved['timestep'])} ps steps, "
                f"not {temperature} K with {timestep} ps"
            )
        sampler_state = states.SamplerState(saved["positions"] * unit.nanometer, saved["velocities"] * unit.nanometer / unit.picosecond)
        seed = int(saved["seed"])
    else:
        xyz = np.asarray(positions, dtype=np.float64)
        if xyz.shape != (n, 3):
            raise ValueError(f"positions must have shape ({n}, 3), got {xyz.shape}")
        frames = []
        sampler_state = states.SamplerState(xyz * unit.nanometer)
        if box_vectors is not None:
            sampler_state.box_vectors = np.asarray(box_vectors) * unit.nanometer
        save_topology(trajectory.with_suffix(".pdb"), topology, xyz)

    move = SeededLangevinMove(
        timestep, collision_rate, steps_per_frame, seed=derive_seed(seed, len(frames)), refresh_velocities=False
    )
    context, _ = context_cache.get_context(thermodynamic_state, move._get_integrator(thermodynamic_state))
    if not frames:
        sampler_state.apply_to_context(context, ignore_velocities=True)
        context.setVelocitiesToTemperature(temperature * unit.kelvin, derive_seed(seed, 0, 2))
        if equilibration_steps > 0:
            context.getIntegrator().step(int(equilibration_steps))
        sampler_state.update_from_context(context)

    def write() -> None:
        save_trajectory(trajectory, np.asarray(frames), topology, box_lengths=box_lengths,
                        time=np.arange(1, len(frames) + 1) * steps_per_frame * timestep)
        np.savez(
            checkpoint.with_name(checkpoint.name + ".tmp.npz"),
            positions=np.asarray(sampler_state.positions.value_in_unit(unit.nanometer)),
            velocities=np.asarray(sampler_state.velocities.value_in_unit(unit.nanometer / unit.picosecond)),
            n_frames=len(frames), seed=seed, temperature=temperature, timestep=timestep,
        )
        os.replace(checkpoint.with_name(checkpoint.name + ".tmp.npz"), checkpoint)

    bar = tqdm(total=int(n_frames), initial=len(frames), disable=not progress, desc=f"MD {trajectory.name}", unit="frame")
    try:
        while len(frames) < int(n_frames):
            # Velocities carry over between segments: this is one continuous Langevin trajectory.
            move.apply(thermodynamic_state, sampler_state, context_cache=context_cache)
            frames.append(np.asarray(sampler_state.positions.value_in_unit(unit.nanometer), dtype=np.float32))
            bar.update(1)
            if len(frames) % int(checkpoint_every) == 0 or len(frames) == int(n_frames):
                write()
    finally:
        bar.close()
    return trajectory
