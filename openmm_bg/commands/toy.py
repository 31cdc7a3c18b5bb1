"""Train a Boltzmann generator on a 2-D toy and check it against the exact answer.

The training data come from one state only; the generator must find the other,
and its reweighted free-energy profile and state free-energy difference are
compared with numerical quadrature.  Prints a report and writes a PNG figure.

``particle-dimer`` is the 2-D dimer among 36 solvent particles
(:mod:`openmm_bg.recipes.particle_dimer`): trained on bundled MD of both states, then by
energy, and checked against umbrella sampling along the dimer distance.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ._options import add_threads_argument, requested_threads, settings_threads

__all__ = ["configure", "run", "TOY_NAMES", "PARTICLE_TOYS", "DEFAULTS"]

#: the toys of openmm_bg.recipes.toy.TOY_SYSTEMS and ToyDemoSettings' budget, written out so that
#: --help needs no torch (tests/test_cli.py checks them against the recipe)
TOY_NAMES = ("double-well", "mueller-brown")
DEFAULTS = {"n_samples": 100_000, "ml_iterations": 1000, "kl_iterations": 2000}
#: particle systems of openmm_bg.recipes.particle_dimer, with ParticleDimerSettings' budget written out likewise
PARTICLE_TOYS = ("particle-dimer",)
PARTICLE_DEFAULTS = {"n_samples": 50_000, "ml_iterations": 1500, "kl_iterations": 2000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("system", nargs="?", default="double-well", choices=TOY_NAMES + PARTICLE_TOYS, help="toy system (default: double-well)")
    parser.add_argument(
        "--samples", type=int, default=None,
        help=f"generator samples for the estimates (default {DEFAULTS['n_samples']}; particle-dimer {PARTICLE_DEFAULTS['n_samples']} per temperature)",
    )
    parser.add_argument("--ml-iterations", type=int, default=None, help=f"iterations of training by example (default {DEFAULTS['ml_iterations']}; particle-dimer {PARTICLE_DEFAULTS['ml_iterations']} per flow)")
    parser.add_argument("--kl-iterations", type=int, default=None, help=f"iterations of training by example and energy (default {DEFAULTS['kl_iterations']}; particle-dimer {PARTICLE_DEFAULTS['kl_iterations']} per flow)")
    parser.add_argument("--quick", action="store_true", help="a reduced budget that runs in about a minute (particle-dimer: a few minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("openmm-bg-toy"), help="folder for the figure and report (default ./openmm-bg-toy)")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _budget(args: argparse.Namespace, defaults: dict) -> dict:
    """The budget the command line asks for, each value not given taken from ``defaults``."""
    given = {"n_samples": args.samples, "ml_iterations": args.ml_iterations, "kl_iterations": args.kl_iterations}
    return {name: defaults[name] if value is None else value for name, value in given.items()}


def run(args: argparse.Namespace) -> int:
    requested_threads(args)
    if args.system in PARTICLE_TOYS:
        return _run_particle_dimer(args)
    from ..recipes.toy import ToyDemoSettings, plot_toy_demo, run_toy_demo

    if args.quick:
        settings = ToyDemoSettings.reduced(args.system)
    else:
        settings = ToyDemoSettings(system=args.system, **_budget(args, DEFAULTS))
    settings.seed = args.seed
    for name in ("n_samples", "ml_iterations", "kl_iterations"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(settings, name)}")
    # only an explicit --threads replaces the settings' torch_threads, which run_toy_demo applies itself
    settings.torch_threads = settings_threads(args, settings.torch_threads, "ToyDemoSettings.torch_threads")
    report = run_toy_demo(settings, progress=not args.no_progress)
    args.output.mkdir(parents=True, exist_ok=True)
    figure = plot_toy_demo(report, args.output / f"{settings.system}.png")
    summary = {
        "settings": asdict(settings),
        "delta_f": report.delta_f.value,
        "delta_f_error": report.delta_f.error,
        "delta_f_exact": report.delta_f_exact,
        "kish_ess": report.ess,
        "max_profile_deviation": report.max_profile_deviation,
        "max_profile_error": report.max_profile_error,
        "energy_evaluations": report.energy_evaluations,
        "wall_time_s": report.wall_time,
    }
    (args.output / f"{settings.system}.json").write_text(json.dumps(summary, indent=2))
    print(report.summary())
    print(f"figure                 {figure}")
    return 0


def _run_particle_dimer(args: argparse.Namespace) -> int:
    from ..recipes.particle_dimer import ParticleDimerSettings, plot_particle_dimer, run_particle_dimer

    budget = _budget(args, PARTICLE_DEFAULTS)
    if args.quick:
        given = {name: value for name, value in budget.items() if getattr(args, {"n_samples": "samples"}.get(name, name)) is not None}
        settings = ParticleDimerSettings.reduced(seed=args.seed, **given)
    else:
        settings = ParticleDimerSettings(seed=args.seed, **budget)
    for name in ("n_samples", "ml_iterations"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(settings, name)}")
    settings.torch_threads = settings_threads(args, settings.torch_threads, "ParticleDimerSettings.torch_threads")
    report = run_particle_dimer(settings, progress=not args.no_progress)
    args.output.mkdir(parents=True, exist_ok=True)
    figure = plot_particle_dimer(report, args.output / "particle-dimer.png")
    (args.output / "particle-dimer.json").write_text(json.dumps(report.to_dict(), indent=1))
    print(report.summary())
    print(f"figure                 {figure}")
    return 0
