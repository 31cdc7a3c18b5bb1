"""Does redrawing velocities every iteration bias Langevin sampling?  ala2-vacuum at 300 K.

Parallel tempering (``openmm_bg.simulation.run_parallel_tempering``) runs each replica as
:class:`~openmm_bg.simulation.langevin.SeededLangevinMove` segments that start by redrawing
Maxwell-Boltzmann velocities.  For exact dynamics that is a Gibbs step; for a
discretised integrator it is not quite one.  This benchmark measures the effect on the
mean reduced potential energy ``<u>`` of the phi < 0 state, a quantity every correct
sampler must reproduce, side by side for:

* ``carried 1/ps``: LangevinMiddleIntegrator, 1 fs, friction 1/ps, velocities carried
  over between segments (plain MD, as the bundled training data were made);
* ``redrawn 1/ps``: the same with velocities redrawn every segment (the parallel
  tempering kernel of the first 1 fs reference);
* ``redrawn 10/ps``: redrawn, friction 10/ps (the kernel used now);
* ``GHMC``: openmmtools' GHMCIntegrator, 1 fs, 1/ps: Metropolized, so exact whatever
  the step (the yardstick);

and, from the bundled files, the 300 K replica of ``data/ala2-vacuum-pt.npz`` and the
unbiased 300 K MD runs (energies recomputed).  Each run has ``--segments`` segments of 500
steps (5 ns by default) after 20 segments of equilibration, samples ``u`` after every
segment and reports ``<u | phi < 0>`` with a standard error from 20 blocks, and its
difference from GHMC in kT and in combined standard errors.

Run from the repository root (about 8 minutes on one core)::

    nice -n 5 python -m benchmarks.langevin_velocity_refresh
    nice -n 5 python -m benchmarks.langevin_velocity_refresh --segments 2000     # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit

from openmm_bg.reference.bundled import bundled_path, load_reference, load_tempering_samples
from openmm_bg.molecules.trajectories import load_trajectory
from openmm_bg.simulation.langevin import SeededLangevinMove, derive_seed
from openmm_bg.units import MOLAR_GAS_CONSTANT
from openmm_bg.reference.estimates import block_average, cold_replica_mean_energy
from openmm_bg.energies import OpenMMEnergy
from openmm_bg.molecules.systems import get_system

ROOT = Path(__file__).resolve().parent.parent
STEPS = 500
TIMESTEP = 0.001  # ps
N_BLOCKS = 20  # blocks per time series for the standard errors


def run_langevin(mol, friction: float, refresh: bool, segments: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``u`` (kT) and phi after each segment of SeededLangevinMove, applied through openmmtools."""
    from openmmtools import cache, states

    state = states.ThermodynamicState(mol.system, mol.temperature * unit.kelvin)
    sampler_state = states.SamplerState(mol.positions * unit.nanometer)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"), capacity=1)
    move = SeededLangevinMove(TIMESTEP, friction, STEPS, seed=seed, refresh_velocities=refresh)
    if not refresh:  # a carried-velocity run needs velocities to start from
        context, _ = context_cache.get_context(state, move._get_integrator(state))
        sampler_state.apply_to_context(context)
        context.setVelocitiesToTemperature(mol.temperature * unit.kelvin, derive_seed(seed, 1))
        sampler_state.update_from_context(context)
    start = time.perf_counter()
    energies, xyz = [], []
    for i in range(20 + segments):
        move.apply(state, sampler_state, context_cache=context_cache)
        if i >= 20:
            energies.append(state.reduced_potential(sampler_state))
            xyz.append(sampler_state.positions.value_in_unit(unit.nanometer))
    phi = mol.collective_variables["phi"](np.asarray(xyz))
    return np.asarray(energies), phi, time.perf_counter() - start


def run_ghmc(mol, segments: int, seed: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The same with openmmtools' GHMCIntegrator (Metropolized, exact); also its acceptance rate."""
    from openmmtools.integrators import GHMCIntegrator

    integrator = GHMCIntegrator(temperature=mol.temperature * unit.kelvin, collision_rate=1.0 / unit.picosecond,
                                timestep=TIMESTEP * unit.picosecond)
    integrator.setRandomNumberSeed(derive_seed(seed, 0))
    context = openmm.Context(mol.system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.positions)
    context.setVelocitiesToTemperature(mol.temperature * unit.kelvin, derive_seed(seed, 1))
    kT = MOLAR_GAS_CONSTANT * mol.temperature
    start = time.perf_counter()
    integrator.step(20 * STEPS)
    integrator.setGlobalVariableByName("naccept", 0)
    integrator.setGlobalVariableByName("ntrials", 0)
    energies, xyz = [], []
    for _ in range(segments):
        integrator.step(STEPS)
        st = context.getState(getEnergy=True, getPositions=True)
        energies.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / kT)
        xyz.append(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    acceptance = integrator.getGlobalVariableByName("naccept") / integrator.getGlobalVariableByName("ntrials")
    phi = mol.collective_variables["phi"](np.asarray(xyz))
    return np.asarray(energies), phi, time.perf_counter() - start, acceptance


def bundled_rows(mol) -> list[tuple[str, float, float, str]]:
    """``<u | phi < 0>`` of the bundled 300 K MD (recomputed) and of the PT's 300 K replica."""
    import torch

    rows = []
    energy = OpenMMEnergy(mol.system, mol.temperature, platform="Reference")
    for name in ("ala2-vacuum-300K-c7eq.dcd", "ala2-vacuum-300K-c7eq-2.dcd", "ala2-vacuum-300K-md.dcd"):
        xyz = load_trajectory(bundled_path(name), mol.topology, trajectory_topology=bundled_path("ala2-vacuum-300K-md.pdb"))
        xyz = xyz.astype(np.float64)
        x = torch.from_numpy(xyz.reshape(len(xyz), -1))
        u = np.concatenate([energy(x[i : i + 5000]).numpy() for i in range(0, len(x), 5000)])
        a = mol.collective_variables["phi"](xyz) < 0
        rows.append((f"bundled MD {name}", *block_average(u[a], N_BLOCKS), f"{int(a.sum())} frames, carried 1/ps"))
    reference = load_reference("ala2-vacuum")
    per_repeat = cold_replica_mean_energy(load_tempering_samples("ala2-vacuum"), lambda s: s["phi"][:, :, 0] < 0,
                                          reference["discarded_iterations_per_repeat"])
    friction = reference.get("simulation", {}).get("friction", 1.0)
    rows.append((
        "bundled PT, 300 K replica", float(per_repeat.mean()), float(per_repeat.std(ddof=1) / math.sqrt(len(per_repeat))),
        f"{len(per_repeat)} repeats, redrawn {friction:g}/ps; error over repeats",
    ))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=10_000, help="segments of 500 steps per run (default: 5 ns)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    mol = get_system("ala2-vacuum")

    rows = []
    u, phi, ghmc_s, acceptance = run_ghmc(mol, args.segments, args.seed)
    a = phi < 0
    ghmc = block_average(u[a], N_BLOCKS)
    rows.append(("GHMC 1 fs (exact)", *ghmc, f"acceptance {acceptance:.3f}, {ghmc_s:.0f} s"))
    for friction, refresh in ((1.0, False), (1.0, True), (10.0, True)):
        u, phi, seconds = run_langevin(mol, friction, refresh, args.segments, args.seed)
        a = phi < 0
        label = f"{'redrawn' if refresh else 'carried'} {friction:g}/ps"
        rows.append((f"Langevin 1 fs, {label}", *block_average(u[a], N_BLOCKS), f"{seconds:.0f} s"))
    rows += bundled_rows(mol)

    print(f"ala2-vacuum, 300 K: mean reduced potential energy in phi < 0, {args.segments} segments of {STEPS} steps per run")
    print(f"{'sampler':38s} {'<u|A> (kT)':>18s} {'- GHMC':>8s} {'z':>6s}  note")
    for name, mean, error, note in rows:
        diff = mean - ghmc[0]
        z = diff / math.hypot(error, ghmc[1]) if name != rows[0][0] else float("nan")
        print(f"{name:38s} {mean:9.3f} +- {error:5.3f} {diff:+8.3f} {z:+6.1f}  {note}")
    if args.json:
        args.json.write_text(json.dumps([dict(sampler=r[0], mean_u=r[1], error=r[2], note=r[3]) for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
