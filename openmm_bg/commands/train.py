"""Train a Boltzmann generator for a molecule from an MD trajectory.

The generator is internal coordinates (rigid body removed), their normalisation
fitted to the trajectory, a coupling flow (rational-quadratic spline couplings by
default, or RealNVP's affine ones) and a Gaussian prior.  The last
``--validation-fraction`` of the trajectory is held out: the loss on it, recorded
every ``validate_every`` iterations, shows over-fitting in losses.png.  Training follows the
settings of a YAML file (see ``openmm_bg.training.TrainingConfig``: by example, by
energy at one or several temperatures, with weight schedules); every setting used is
written next to the outputs.  The recipe is
``openmm_bg.training.recipe``; the run is reproducible from the settings' ``seed``
(network initialisation and batches).  Outputs in --output: generator.pt (reload with
openmm_bg.generator.load_generator or use in BoltzmannGeneratorMove), settings.yaml,
history.json (one entry per iteration) and losses.png.

The system is a registered one (``SYSTEM`` or ``--system NAME``) or your own files
(``--structure`` with ``--system-file`` or ``--forcefield``, as in ``openmm-bg simulate``);
for your own files the OpenMM platform of the energies is the fastest of the installed
ones in a short timing, printed on the line "OpenMM platform ...".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from ._options import add_system_arguments, add_threads_argument, command_threads, requested_threads, resolve_command_system, training_workload

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg train``."""
    add_system_arguments(parser, positional=True, hamiltonian=True)
    parser.add_argument("--trajectory", type=Path, required=True, help="MD trajectory (DCD, XTC, ...) matching the system's atoms")
    parser.add_argument("--temperature", type=float, metavar="K",
                        help="the generator's target temperature, recorded in the checkpoint for sample and free-energy "
                             "(default: the system's)")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="hold out this final fraction of the frames to measure over-fitting (default 0.1; 0: none)")
    parser.add_argument("--config", type=Path, help="YAML file of training settings; missing keys keep their defaults")
    parser.add_argument("--coupling", choices=["spline", "circular-spline", "affine"], default="spline",
                        help="coupling layers: rational-quadratic splines (default), circular splines that keep torsions on "
                             "the circle (docs/training.md), or affine (RealNVP)")
    parser.add_argument("--blocks", type=int, default=4, help="coupling blocks (default 4)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="hidden widths (default 128 128)")
    parser.add_argument("--output", "-o", type=Path, default=Path("openmm-bg-train"), help="output folder (default ./openmm-bg-train)")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _training_step(molecule, frames, config, architecture: dict):
    """The network work of one training step, on a stand-in for the generator to train, to time.

    The stand-in has the same build and the step the settings' batch sizes and loss
    terms (:func:`~._options.training_workload`); it is built apart, so the run's own
    generator, its seed and torch's global generator are untouched.
    """
    import torch

    from ..generator.recipes import molecular_generator_from_data
    from ..training.recipe import seeded_parameters
    from ..training.trainer import Schedule

    stand_in = seeded_parameters(
        lambda: molecular_generator_from_data(molecule.topology, frames.positions, None, system=molecule.system, **architecture)[0], config.seed
    )
    dtype = next(stand_in.parameters()).dtype
    rows = torch.randint(0, frames.positions.shape[0], (config.batch_size,), generator=torch.Generator().manual_seed(config.seed))
    batch = torch.as_tensor(frames.positions, dtype=dtype)[rows] if Schedule(config.w_ml).ever_positive else None
    kl_batch_size = config.kl_batch_size if Schedule(config.w_kl).ever_positive else 0
    return training_workload(stand_in, batch, kl_batch_size, config.temperatures, config.seed)


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg train``; return the exit status."""
    from .._validation import ensure_count
    from ..training.plots import plot_losses
    from ..training.recipe import check_fraction, load_training_frames, train_molecular_generator
    from ..training.trainer import TrainingConfig, read_settings

    for name, value in (("--blocks", args.blocks), ("--stride", args.stride), *(("--hidden", h) for h in args.hidden)):
        ensure_count(value, name)
    check_fraction(args.validation_fraction, "--validation-fraction")
    requested_threads(args)
    values = read_settings(args.config, "training settings") if args.config else {}
    # held-out frames make the best generator known: keep it unless the settings say otherwise
    values.setdefault("keep", "best" if args.validation_fraction > 0 else "last")
    config = TrainingConfig.from_dict(values)
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ValueError(f"--temperature must be a positive number of kelvin, got {args.temperature}")
    molecule = resolve_command_system("train", args)
    if args.temperature is not None:
        molecule = dataclasses.replace(molecule, temperature=float(args.temperature))
    frames = load_training_frames(molecule, [(args.trajectory, args.stride)], args.validation_fraction)
    architecture = {"n_blocks": args.blocks, "hidden": list(args.hidden), "coupling": args.coupling}
    workload = None if requested_threads(args) else _training_step(molecule, frames, config, architecture)
    with command_threads(args, workload):
        # the network's initial weights come from the settings' seed too: the run is reproducible from it
        training = train_molecular_generator(molecule, frames, [config], seed=config.seed, architecture=architecture, progress=not args.no_progress)
    wall = sum(training.wall_time_s)

    args.output.mkdir(parents=True, exist_ok=True)
    trainer = training.trainers[0]
    checkpoint = training.save(args.output / "generator.pt", molecule, {"trajectory": str(args.trajectory), "wall_time_s": wall,
                                                                         "kept": _kept(trainer)})
    if trainer.last_parameters is not None:
        _save_last(training, trainer, args.output / "generator-last.pt", molecule, {"trajectory": str(args.trajectory), "wall_time_s": wall, "kept": "last"})
    config.to_yaml(args.output / "settings.yaml")
    (args.output / "history.json").write_text(json.dumps(trainer.history))
    plot_losses([trainer.history], args.output / "losses.png")
    last = trainer.history[-1]
    terms = "  ".join(f"{k} {last[k]:.4g}" for k in ("ml", "ml_validation", "kl") if k in last)
    print(f"trained {trainer.iteration} iterations on {training.n_frames} frames of {molecule.name} in {wall:.1f} s; {terms}")
    print(f"energy evaluations {trainer.energy_evaluations}; skipped steps {trainer.n_skipped}")
    print(f"generator checkpoint {checkpoint} ({_kept(trainer)})")
    if trainer.last_parameters is not None:
        print(f"last generator       {args.output / 'generator-last.pt'}")
    return 0


def _kept(trainer) -> str:
    """Which generator the run kept, in words."""
    if trainer.last_parameters is None:
        stop = f", stopped early at iteration {trainer.iteration}" if trainer.stopped_early else ""
        return f"the last, iteration {trainer.iteration - 1}{stop}"
    return f"the best held-out loss, {trainer.best['loss']:.4g} at iteration {trainer.best['iteration']}" + (
        f"; stopped early at iteration {trainer.iteration}" if trainer.stopped_early else "")


def _save_last(training, trainer, path, molecule, metadata) -> None:
    """Write the generator of the last step beside the best one, and put the best back."""
    import torch

    generator = training.generator
    with torch.no_grad():
        best = {name: p.detach().clone() for name, p in generator.named_parameters()}
        for name, p in generator.named_parameters():
            p.copy_(trainer.last_parameters[name])
        try:
            training.save(path, molecule, metadata)
        finally:
            for name, p in generator.named_parameters():
                p.copy_(best[name])
