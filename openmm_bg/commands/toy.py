"""Train a Boltzmann generator on a 2-D toy and check it against the exact answer.

The training data come from one state only; the generator must find the other,
and its reweighted free-energy profile and state free-energy difference are
compared with numerical quadrature.  Prints a report and writes a PNG figure.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ._options import add_threads_argument, requested_threads, settings_threads

__all__ = ["configure", "run", "TOY_NAMES", "DEFAULTS"]

#: the toys of openmm_bg.recipes.toy.TOY_SYSTEMS and ToyDemoSettings' budget, written out so that
#: --help needs no torch (tests/test_cli.py checks them against the recipe)
TOY_NAMES = ("double-well", "mueller-brown")
DEFAULTS = {"n_samples": 100_000, "ml_iterations": 1000, "kl_iterations": 2000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("system", nargs="?", default="double-well", choices=TOY_NAMES, help="toy system (default: double-well)")
    parser.add_argument("--samples", type=int, default=DEFAULTS["n_samples"], help=f"generator samples for the estimates (default {DEFAULTS['n_samples']})")
    parser.add_argument("--ml-iterations", type=int, default=DEFAULTS["ml_iterations"], help="iterations of training by example")
    parser.add_argument("--kl-iterations", type=int, default=DEFAULTS["kl_iterations"], help="iterations of training by example and energy")
    parser.add_argument("--quick", action="store_true", help="a reduced budget that runs in about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("openmm-bg-toy"), help="folder for the figure and report (default ./openmm-bg-toy)")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from ..recipes.toy import ToyDemoSettings, plot_toy_demo, run_toy_demo

    requested_threads(args)
    if args.quick:
        settings = ToyDemoSettings.reduced(args.system)
    else:
        settings = ToyDemoSettings(system=args.system, n_samples=args.samples, ml_iterations=args.ml_iterations, kl_iterations=args.kl_iterations)
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
