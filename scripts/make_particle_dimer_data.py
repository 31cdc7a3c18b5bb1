"""Bundled MD of the particle dimer in each of its states: data/particle-dimer-{closed,open}.{dcd,pdb}.

Two unbiased Langevin runs of the registered ``particle-dimer`` System at its temperature
(300 K, where the System's kT is the model's energy unit), one started with the dimer
closed and one open, each from a relaxed lattice of solvent
(:func:`openmm_bg.energies.particle_dimer.start_positions`).  The MD is the package's own,
:func:`openmm_bg.simulation.run_md` (LangevinMiddleIntegrator via a seeded openmmtools move,
resumable); the raw trajectories go to ``RUNS`` and are not shipped.

The model is two-dimensional and its System gives every particle an independent standard
normal ``z`` (nm) at 300 K.  The shipped frames have ``z`` set to 0: they are then
samples of the model's ``(x, y)`` distribution at ``z = 0``, where the System's reduced
energy is the model's.  The barrier of the dimer bond (15-16 kT) keeps each run in the
state it starts in; the script reports the fraction of frames in each state.

    OPENMM_CPU_THREADS=1 nice -n 10 python scripts/make_particle_dimer_data.py runs/particle-dimer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from openmm_bg.energies.particle_dimer import ParticleDimer, in_plane, start_positions
from openmm_bg.molecules.systems import get_system
from openmm_bg.molecules.trajectories import load_trajectory, save_topology, save_trajectory
from openmm_bg.reference import DATA_DIR
from openmm_bg.simulation.dynamics import run_md

#: state -> offset of its run's seed from --seed
STATES = {"closed": 0, "open": 1}


def start(state: str) -> np.ndarray:
    """The relaxed start of a run with the dimer at the bond's closed or open minimum, shape (38, 3), nm, z = 0."""
    energy = ParticleDimer()
    closed, _, open_ = energy.stationary_distances()
    return in_plane(start_positions(energy, closed if state == "closed" else open_))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder for the raw trajectories and their checkpoints (resumable)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the shipped files go (default: the package data)")
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--steps-per-frame", type=int, default=200)
    parser.add_argument("--timestep", type=float, default=0.01, help="ps")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--equilibration-steps", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1, help="the closed run uses SEED, the open run SEED + 1")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    mol = get_system("particle-dimer")
    args.runs.mkdir(parents=True, exist_ok=True)
    for state, offset in STATES.items():
        raw = args.runs / f"particle-dimer-{state}-raw.dcd"
        run_md(mol.system, mol.topology, start(state), raw, args.frames, temperature=mol.temperature,
               steps_per_frame=args.steps_per_frame, timestep=args.timestep, collision_rate=args.friction,
               platform=mol.platform, equilibration_steps=args.equilibration_steps, seed=args.seed + offset,
               checkpoint_every=500, progress=not args.no_progress)
        xyz = load_trajectory(raw, mol.topology).astype(np.float64)[: args.frames]
        xyz[:, :, 2] = 0.0
        target = args.data_dir / f"particle-dimer-{state}.dcd"
        save_topology(target.with_suffix(".pdb"), mol.topology, start(state))
        save_trajectory(target, xyz, mol.topology, time=np.arange(1, len(xyz) + 1) * args.steps_per_frame * args.timestep)
        d = mol.collective_variables["dimer_distance"](xyz)
        u = mol.reduced_potential(xyz)
        inside = {name: float(np.mean(indicator(xyz))) for name, indicator in mol.states.items()}
        print(f"{target}: {len(xyz)} frames, dimer distance {d.min():.3f}-{d.max():.3f} nm (mean {d.mean():.3f}), "
              f"fraction closed {inside['closed']:.4f}, open {inside['open']:.4f}, mean u {u.mean():.2f} kT, "
              f"{target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
