"""Run reference MD or parallel tempering and write a trajectory the training command can read.

Plain Langevin MD writes OUTPUT (.dcd or .xtc) and OUTPUT's stem + .pdb (the topology).
With --temperatures, parallel tempering runs one replica per temperature, keeps the
openmmtools storage in OUTPUT's stem + .nc, and writes the frames of the lowest
temperature to OUTPUT.  Both resume when run again with the same OUTPUT.

Examples::

    openmm-bg simulate ala2-vacuum -o ala2.dcd --frames 10000 --steps-per-frame 1000 --timestep 0.001
    openmm-bg simulate --system ala2-vacuum -o pt.dcd --temperatures 300 400 550 750 1000 --frames 2000
    openmm-bg simulate --structure mine.pdb --system-file mine.xml -o mine.dcd --frames 500
    openmm-bg simulate --structure ala2.crd --system-file ala2.prmtop --implicit-solvent OBC1 -o ala2.dcd
    openmm-bg simulate --structure mol.crd --system-file mol.psf --forcefield par_all36m_prot.prm -o mol.dcd

For your own files the OpenMM platform is, unless --platform names one, the fastest
of the installed ones in a timing of a few energy-and-forces calls; the line
"OpenMM platform ..." says which, with the times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._validation import ensure_count
from ._options import add_system_arguments, add_threads_argument, command_threads, requested_threads, resolve_command_system

#: ``--platform``'s value that chooses by measurement (:data:`openmm_bg.molecules.platforms.AUTO`, spelled here so that --help imports no OpenMM)
AUTO_PLATFORM = "auto"

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg simulate`` to ``parser``."""
    add_system_arguments(parser, positional=True, hamiltonian=True, hydrogen_mass=True)
    parser.add_argument("-o", "--output", type=Path, required=True, help="trajectory to write (.dcd or .xtc)")
    parser.add_argument(
        "--start", type=Path,
        help="start from the positions in this PDB or trajectory (last frame) instead of the system's own; atoms must match",
    )
    parser.add_argument("--frames", type=int, default=1000, help="frames to write (PT: iterations)")
    parser.add_argument("--steps-per-frame", type=int, default=500, help="MD steps per frame written (PT: per iteration)")
    parser.add_argument("--timestep", type=float, default=0.001, help="ps")
    parser.add_argument("--friction", type=float, default=None,
                        help="1/ps; default 1 for MD, 10 for parallel tempering, whose replicas redraw velocities every iteration")
    parser.add_argument("--temperature", type=float, help="K; default: the system's")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K, increasing: run parallel tempering")
    parser.add_argument("--equilibration-steps", type=int, default=0, help="MD steps discarded before the first frame (default 0)")
    parser.add_argument(
        "--platform", default=AUTO_PLATFORM, metavar="NAME",
        help="OpenMM platform: a name (Reference, CPU, CUDA, OpenCL), or auto (the default): for your own files, "
             "the fastest of the installed platforms in a timing of a few energy-and-forces calls (CUDA and OpenCL "
             "only where installed); for a registered system, its measured recommended one",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the dynamics: initial velocities and Langevin noise (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="frames between checkpoints (MD)")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _with_start(mol, path: Path):
    """``mol`` with its positions replaced by the last frame of ``path`` (atoms checked)."""
    import dataclasses

    import numpy as np

    from ..molecules.trajectories import load_trajectory

    if not path.is_file():
        raise FileNotFoundError(f"--start file not found: {path}")
    positions = load_trajectory(path, mol.topology)
    return dataclasses.replace(mol, positions=np.asarray(positions[-1], dtype=np.float64))


def run(args: argparse.Namespace) -> int:
    """Run the simulation described by ``args``; return 0 on success."""
    from ..simulation.langevin import repartition_hydrogen_mass

    if args.output.suffix.lower() not in (".dcd", ".xtc"):
        raise ValueError(f"--output must end in .dcd or .xtc, got {args.output.name}")
    ensure_count(args.frames, "--frames")
    ensure_count(args.steps_per_frame, "--steps-per-frame")
    requested_threads(args)
    if not args.timestep > 0:
        raise ValueError(f"--timestep must be positive, got {args.timestep}")
    from ..molecules.platforms import check_platform_name

    check_platform_name(args.platform)
    mol = resolve_command_system("simulate", args, platform=args.platform)
    if args.start is not None:
        mol = _with_start(mol, args.start)
    system = mol.system
    if args.hydrogen_mass is not None:
        system = repartition_hydrogen_mass(system, mol.openmm_topology, args.hydrogen_mass)
    platform = mol.platform if args.platform == AUTO_PLATFORM else args.platform
    progress = not args.no_progress
    # without --friction, run_md and run_parallel_tempering keep their own defaults (1/ps and 10/ps)
    friction = {} if args.friction is None else {"collision_rate": args.friction}
    # the dynamics are OpenMM's, which keeps its own threads: torch has nothing to time here
    with command_threads(args, None):
        return _simulate(args, mol, system, platform, progress, friction)


def _simulate(args: argparse.Namespace, mol, system, platform: str, progress: bool, friction: dict) -> int:
    """MD, or parallel tempering with --temperatures, of ``system``; writes the outputs and returns 0."""
    from ..simulation.tempering import read_parallel_tempering, run_parallel_tempering
    from ..simulation.dynamics import run_md
    from ..molecules.trajectories import save_topology, save_trajectory

    if not args.temperatures:
        run_md(
            system, mol.topology, mol.positions, args.output, args.frames,
            temperature=args.temperature or mol.temperature, steps_per_frame=args.steps_per_frame,
            timestep=args.timestep, platform=platform, box_vectors=mol.box_vectors, **friction,
            equilibration_steps=args.equilibration_steps, seed=args.seed, checkpoint_every=args.checkpoint_every,
            progress=progress,
        )
        print(f"wrote {args.output} and {args.output.with_suffix('.pdb')} ({args.frames} frames)")
        return 0

    if mol.box_vectors is not None:
        raise ValueError(f"parallel tempering here is for non-periodic systems; {mol.name} is periodic")
    if args.timestep > 0.001:
        print(
            f"openmm-bg simulate: caution: parallel tempering with {1000 * args.timestep:g} fs steps. On ala2-vacuum "
            "(no constraints), 2 fs steps with 4 Da hydrogens gave F(phi > 0) - F(phi < 0) about 0.4 kT below 1 fs "
            "steps with true masses: integrator error in the hot replicas reaches the cold one through the "
            "exchanges. For a reference, repeat at a smaller --timestep.",
            file=sys.stderr,
        )
    storage = args.output.with_suffix(".nc")
    run_parallel_tempering(
        system, mol.positions, args.temperatures, storage, args.frames, steps_per_iteration=args.steps_per_frame,
        timestep=args.timestep, platform=platform, seed=args.seed, progress=progress, **friction,
    )
    data = read_parallel_tempering(storage)
    lowest = data.by_state(data.positions)[:, 0]
    stride = data.steps_per_iteration * args.timestep
    save_trajectory(args.output, lowest, mol.topology, time=data.checkpoint_iterations * stride)
    save_topology(args.output.with_suffix(".pdb"), mol.topology, mol.positions)
    print(
        f"wrote {storage}, and {args.output} with {len(lowest)} frames at {data.temperatures[0]:g} K "
        f"(iteration 0 is the start)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover - the lead wires this into openmm-bg
    import sys

    _parser = argparse.ArgumentParser(prog="openmm-bg simulate", description=__doc__)
    configure(_parser)
    sys.exit(run(_parser.parse_args()))
