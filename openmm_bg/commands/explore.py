"""Adaptive exploration from a system's starting configuration (sampling and training).

Runs :func:`openmm_bg.training.exploration.explore` on a ready-made system, prints how many
energy evaluations it took to reach a target state, and writes the trained
generator as a checkpoint that ``BoltzmannGeneratorMove`` can load.
"""

from __future__ import annotations

import argparse

from ._options import add_threads_argument, command_threads, registered_system, requested_threads, training_workload

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg explore``."""
    from ..molecules.systems import list_systems

    parser.add_argument("system", nargs="?", metavar="SYSTEM", help=f"ready-made system, one of: {', '.join(list_systems())}")
    parser.add_argument("--system", dest="system_option", metavar="NAME", help="the same as the positional SYSTEM")
    parser.add_argument("-o", "--output", required=True, help="generator checkpoint to write (.pt)")
    parser.add_argument("--target", default=None, help="state of the system to watch for (e.g. 'right', 'phi_positive')")
    parser.add_argument("--stop-at-target", action="store_true", help="stop once the target state is reached")
    parser.add_argument(
        "--start-frame", type=int, default=None,
        help="start from this frame of the system's bundled trajectory instead of its initial positions "
        "(ala2-vacuum's initial phi = -180 deg lies on the border of phi_positive)",
    )
    parser.add_argument("--iterations", type=int, default=200, help="exploration iterations")
    parser.add_argument("--buffer-size", type=int, default=256, help="configurations in the replay buffer of chains")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch drawn from the buffer")
    parser.add_argument("--step-size", type=float, default=0.5, help="latent step s")
    parser.add_argument("--target-acceptance", type=float, default=None, help="adapt the warm-up and latent steps towards this acceptance")
    parser.add_argument("--mcmc-steps", type=int, default=1, help="latent Metropolis sweeps per iteration")
    parser.add_argument("--independence-steps", type=int, default=0, help="independence Metropolis-Hastings sweeps per iteration")
    parser.add_argument(
        "--relative-temperature", "--temperature", dest="temperature", type=float, default=1.0,
        help="relative temperature T/T0 of the buffer chains (not kelvin; --temperature is the older name)",
    )
    parser.add_argument("--w-kl", type=float, default=0.0, help="weight of the KL (by energy) loss")
    parser.add_argument("--kl-temperatures", type=float, nargs="+", default=[1.0], help="relative temperatures of the KL loss")
    parser.add_argument("--kl-batch-size", type=int, default=128, help="samples per KL (by energy) loss evaluation")
    parser.add_argument("--energy-cut", type=float, default=1e3, help="kT; KL energies above it grow logarithmically")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--warmup-steps", type=int, default=50, help="Cartesian random-walk Metropolis steps of every buffer chain before training")
    parser.add_argument("--warmup-step-size", type=float, default=0.0005, help="nm")
    parser.add_argument("--final-samples", type=int, default=1000, help="samples drawn from the final generator for reweighting")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden layer widths of the conditioners")
    parser.add_argument("--blocks", type=int, default=3, help="coupling blocks of the flow")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network, chains and samples")
    add_threads_argument(parser)


def _exploration_step(generator, start, settings):
    """The network work of one exploration iteration, to time; the generator's weights are left as they were.

    A training step (:func:`~._options.training_workload`) on a batch near ``start``,
    which stands in for the buffer the warm-up fills later, and a pass of a batch
    through the flow without gradient, as the latent Metropolis sweep makes.
    """
    import torch

    dtype = next(generator.parameters()).dtype
    noise = torch.Generator().manual_seed(settings.seed)
    batch = torch.as_tensor(start, dtype=dtype) + 1e-3 * torch.randn(settings.batch_size, *start.shape, generator=noise, dtype=dtype)
    train = training_workload(
        generator, batch if settings.w_ml > 0 else None, settings.kl_batch_size if settings.w_kl > 0 else 0, settings.kl_temperatures, settings.seed
    )

    def step():
        train()
        generator.propose(settings.batch_size, generator=noise)

    return step


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg explore``; return the exit status."""
    from ..coordinates import build_zmatrix
    from ..energies import OpenMMEnergy
    from ..generator.checkpoints import save_generator
    from ..generator.recipes import molecular_generator, realnvp_generator
    from ..molecules.loading import checkpoint_metadata
    from ..molecules.systems import get_system
    from ..training.exploration import ExplorationSettings, explore
    from ..training.recipe import seeded_parameters

    requested_threads(args)
    args.system = registered_system(args)
    if args.system is None:
        raise ValueError("give the system to explore: openmm-bg explore SYSTEM (or --system NAME)")
    molecule = get_system(args.system)
    if args.target is not None and args.target not in molecule.states:
        raise ValueError(f"unknown state {args.target!r} of {args.system}; known: {', '.join(molecule.states) or 'none'}")
    if molecule.n_atoms == 1:
        builder, kwargs = "openmm_bg.generator.recipes.realnvp_generator", dict(event_shape=[1, 3], n_blocks=args.blocks, hidden=list(args.hidden))
        build = realnvp_generator
    else:
        # the normalisation is fitted to the warm-up buffer by explore()
        zmatrix = build_zmatrix(molecule.topology).tolist()
        builder, kwargs = "openmm_bg.generator.recipes.molecular_generator", dict(zmatrix=zmatrix, n_blocks=args.blocks, hidden=list(args.hidden))
        build = molecular_generator
    # the initial weights come from the run's seed, not from torch's global generator
    generator = seeded_parameters(lambda: build(**kwargs), args.seed)
    settings = ExplorationSettings(
        n_iterations=args.iterations,
        buffer_size=args.buffer_size,
        batch_size=args.batch_size,
        step_size=args.step_size,
        target_acceptance=args.target_acceptance,
        mcmc_steps=args.mcmc_steps,
        independence_steps=args.independence_steps,
        temperature=args.temperature,
        w_kl=args.w_kl,
        kl_temperatures=list(args.kl_temperatures),
        kl_batch_size=args.kl_batch_size,
        energy_cut=args.energy_cut,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        warmup_step_size=args.warmup_step_size,
        n_final_samples=args.final_samples,
        seed=args.seed,
    )
    energy = OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform)
    target = molecule.states[args.target] if args.target else None
    start = molecule.positions
    if args.start_frame is not None:
        from ..molecules.trajectories import load_bundled_trajectory

        frames = load_bundled_trajectory(args.system)
        if not 0 <= args.start_frame < len(frames):
            raise ValueError(f"--start-frame must lie in [0, {len(frames)}), got {args.start_frame}")
        start = frames[args.start_frame].astype("float64")
    with command_threads(args, _exploration_step(generator, start, settings)):
        result = explore(generator, energy, start, settings, target=target, stop_at_target=args.stop_at_target)
    path = save_generator(generator, args.output, builder, kwargs, metadata={"exploration": dict(vars(settings)), **checkpoint_metadata(molecule)})
    last = result.history[-1] if result.history else {}
    by_kind = ", ".join(f"{kind} {count}" for kind, count in result.evaluations.items())
    print(f"iterations: {len(result.history)}  energy evaluations: {result.n_energy_evaluations} ({by_kind})  last acceptance: {last.get('acceptance', float('nan')):.3f}")
    if target is not None:
        reached = result.evaluations_to_target
        print(f"target {args.target}: " + (f"reached after {reached} energy evaluations" if reached is not None else "not reached"))
    if result.log_weights is not None:
        print(f"final generator: {len(result.log_weights)} samples, Kish ESS {result.ess:.4f}")
    print(f"generator checkpoint: {path}")
    return 0 if target is None or result.evaluations_to_target is not None else 1
