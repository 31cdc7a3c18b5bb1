"""Train a Boltzmann generator for a molecule from an MD trajectory.

The generator is internal coordinates (rigid body removed), their normalisation
fitted to the trajectory, a coupling flow (rational-quadratic spline couplings by
default, or RealNVP's affine ones) and a Gaussian prior.  The last
``--validation-fraction`` of the trajectory is held out: the loss on it, recorded
every ``validate_every`` iterations, shows over-fitting in losses.png.  Training follows the
settings of a YAML file (see ``openmm_bg.training.TrainingConfig``: by example, by
energy at one or several temperatures, with weight schedules); every setting used is
written next to the outputs.  Outputs in --output: generator.pt (reload with
openmm_bg.generator.load_generator or use in BoltzmannGeneratorMove), settings.yaml,
history.json (one entry per iteration) and losses.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("system", nargs="?", help="a named system (see openmm_bg.systems.list_systems), or omit and give --structure")
    parser.add_argument("--structure", type=Path, help="your own PDB (or .inpcrd with --system-file .prmtop)")
    parser.add_argument("--system-file", type=Path, help="serialized System (.xml) or Amber .prmtop for --structure")
    parser.add_argument("--trajectory", type=Path, required=True, help="MD trajectory (DCD, XTC, ...) matching the system's atoms")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="hold out this final fraction of the frames to measure over-fitting (default 0.1; 0: none)")
    parser.add_argument("--config", type=Path, help="YAML file of training settings; missing keys keep their defaults")
    parser.add_argument("--coupling", choices=["spline", "affine"], default="spline",
                        help="coupling layers: rational-quadratic splines (default) or affine (RealNVP)")
    parser.add_argument("--blocks", type=int, default=4, help="coupling blocks (default 4)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="hidden widths (default 128 128)")
    parser.add_argument("--output", "-o", type=Path, default=Path("openmm-bg-train"), help="output folder (default ./openmm-bg-train)")
    parser.add_argument("--no-progress", action="store_true")


def _molecule(args: argparse.Namespace):
    from ..systems import get_system, load_system

    if args.system and args.structure:
        raise ValueError("give either a system name or --structure, not both")
    if args.system:
        return get_system(args.system)
    if args.structure is None:
        raise ValueError("give a system name or --structure with your own files")
    if not args.structure.is_file():
        raise FileNotFoundError(f"structure file not found: {args.structure}")
    if args.system_file is not None and not args.system_file.is_file():
        raise FileNotFoundError(f"system file not found: {args.system_file}")
    return load_system(args.structure, args.system_file)


def _plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    iterations = np.arange(len(history))
    for ax, key, label in ((axes[0], "ml", "J_ML (negative log-likelihood)"), (axes[1], "kl", "J_KL (reduced free energy of the generator)")):
        values = np.array([row.get(key, np.nan) for row in history], dtype=float)
        ax.plot(iterations, values, lw=0.8, label="training batches")
        ax.set(xlabel="iteration", title=label)
    held = [(i, row["ml_validation"]) for i, row in enumerate(history) if "ml_validation" in row]
    if held:
        axes[0].plot(*zip(*held), "o-", color="tab:red", ms=3, lw=1, label="held-out frames")
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..builders import molecular_generator_from_data
    from ..data import hold_out_final, load_trajectory
    from ..energies import OpenMMEnergy
    from ..generator import save_generator
    from ..training import Trainer, TrainingConfig

    if args.blocks < 1 or any(h < 1 for h in args.hidden) or args.stride < 1:
        raise ValueError(f"--blocks, --hidden and --stride must be positive, got {args.blocks}, {args.hidden}, {args.stride}")
    if not 0.0 <= args.validation_fraction < 1.0:
        raise ValueError(f"--validation-fraction must be in [0, 1), got {args.validation_fraction}")
    config = TrainingConfig.from_yaml(args.config) if args.config else TrainingConfig()
    molecule = _molecule(args)
    if not args.trajectory.is_file():
        raise FileNotFoundError(f"trajectory not found: {args.trajectory}")
    frames = load_trajectory(args.trajectory, molecule.topology, stride=args.stride)
    positions, held_out = hold_out_final(frames, args.validation_fraction)
    n_held = held_out.shape[0]
    if n_held and positions.shape[0] < 2:
        raise ValueError(f"{frames.shape[0]} frames leave too few to train on after holding out {n_held}; lower --validation-fraction")
    energy = OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform)
    generator, builder_kwargs = molecular_generator_from_data(
        molecule.topology, positions, energy, n_blocks=args.blocks, hidden=list(args.hidden), coupling=args.coupling
    )
    start = time.perf_counter()
    trainer = Trainer(generator, config, data=torch.as_tensor(positions, dtype=torch.float64),
                      validation_data=torch.as_tensor(held_out, dtype=torch.float64) if n_held else None)
    trainer.train(progress=not args.no_progress)
    wall = time.perf_counter() - start

    args.output.mkdir(parents=True, exist_ok=True)
    metadata = {
        "system": molecule.name,
        "temperature_K": molecule.temperature,
        "trajectory": str(args.trajectory),
        "n_frames": int(positions.shape[0]),
        "n_validation_frames": int(n_held),
        "training": config.to_dict(),
        "energy_evaluations": trainer.energy_evaluations,
        "wall_time_s": wall,
    }
    checkpoint = save_generator(generator, args.output / "generator.pt", "openmm_bg.builders.molecular_generator", builder_kwargs, metadata)
    config.to_yaml(args.output / "settings.yaml")
    (args.output / "history.json").write_text(json.dumps(trainer.history))
    _plot_losses(trainer.history, args.output / "losses.png")
    last = trainer.history[-1]
    terms = "  ".join(f"{k} {last[k]:.4g}" for k in ("ml", "ml_validation", "kl") if k in last)
    print(f"trained {trainer.iteration} iterations on {positions.shape[0]} frames of {molecule.name} in {wall:.1f} s; {terms}")
    print(f"energy evaluations {trainer.energy_evaluations}; skipped steps {trainer.n_skipped}")
    print(f"generator checkpoint {checkpoint}")
    return 0
