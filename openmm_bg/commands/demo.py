"""Train a Boltzmann generator for alanine dipeptide and check its free energy against a reference.

With no arguments: trains a generator for ala2-vacuum on the bundled MD data (80 ns
in six runs, started in both phi basins; the final 5 % of each held out), by example,
then by example and energy, draws 100,000 importance-weighted samples, and estimates
dF = F(phi > 0) - F(phi < 0) with a bootstrap error, compared with the bundled
parallel-tempering reference (ala2-vacuum-reference.json in openmm_bg/data).  Prints a summary
(Kish ESS, dF, deviation, energy evaluations including the MD that made the data,
wall time) and writes to --output: generator.pt, samples.dcd/.pdb/.npz (as
openmm-bg sample writes them), report.json, history.json, settings.yaml and the
figures ramachandran.png, losses.png and log_weights.png.  Settings (see
openmm_bg.recipes.demo.DemoSettings) come from --config; keys not given keep their values.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ._options import add_threads_argument, requested_threads, settings_threads

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg demo``."""
    parser.add_argument("--output", "-o", type=Path, default=Path("openmm-bg-demo"), help="output folder (default ./openmm-bg-demo)")
    parser.add_argument("--config", type=Path, metavar="DEMO.yaml", help="YAML file of demo settings (openmm_bg.recipes.demo.DemoSettings); missing keys keep their values")
    parser.add_argument("--quick", action="store_true", help="a tiny budget (well under a minute) to check an installation; --config applies on top")
    parser.add_argument("--seed", type=int, help="seed of the run (overrides the settings' seed)")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars and phase messages")


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg demo``; return the exit status."""
    from ..recipes.demo import OUTPUT_FILES, DemoSettings, run_demo
    from ..recipes.demo_plots import plot_demo

    requested_threads(args)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.config is not None:
        settings = DemoSettings.from_yaml(args.config, base=settings)
    if args.seed is not None:
        settings = dataclasses.replace(settings, seed=args.seed)
    # only an explicit --threads replaces the settings' torch_threads, which run_demo applies itself
    threads = settings_threads(args, settings.torch_threads, "DemoSettings.torch_threads")
    if threads != settings.torch_threads:
        settings = dataclasses.replace(settings, torch_threads=threads)
    report = run_demo(settings, args.output, progress=not args.no_progress)
    figures = plot_demo(report, args.output)
    print(report.summary())
    paths = {**report.paths, **{key: str(path) for key, path in figures.items()}}
    for key, name in OUTPUT_FILES.items():
        if key in paths:
            print(f"{name:<22} {paths[key]}")
    return 0
