"""Train Boltzmann generators on the 2-D particle dimer and check their free energies against umbrella sampling.

Trainings of :mod:`openmm_bg.recipes.particle_dimer` (Cartesian x, y of all 38 particles,
solvent put in a fixed order by a Hungarian assignment to the box's cells), each by
example on bundled MD, then by example and energy (reverse KL):

``per-state``
    one flow per state, each trained on its state's MD and by energy at 300 K, sampled as
    an equal mixture (every sample weighted with the mixture density);
``closed-only``
    the closed state's flow alone (trained on closed MD only, plus energy): does it find
    the open state?
``per-state-450K``
    as ``per-state``, trained by energy for 450 K (``target_temperature`` 1.5);
``both-states``
    one flow trained on the MD of both states, then by energy.

Each is estimated at 300 K and 450 K: dF(open - closed) with its bootstrap error, Pareto
k-hat and per-state ESS, and the profile along the dimer distance, against the committed
umbrella references (``benchmarks/results/particle-dimer-umbrella/`` at 300 K and
``particle-dimer-umbrella-450K/``).  Checkpoints go to ``RUNS/trainings[-450K]/`` every
250 iterations (trainings are shared between variants) and a second call resumes; the
figures and ``<variant>.json`` go to ``--results``.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/run_particle_dimer_generator.py runs/particle-dimer-generator
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from openmm_bg.recipes.particle_dimer import ParticleDimerSettings, plot_particle_dimer, run_particle_dimer

#: the two trainings: settings that differ from ParticleDimerSettings' defaults
VARIANTS = {
    "per-state": dict(data_states=("closed", "open"), mixture=True),
    "closed-only": dict(data_states=("closed",)),
    "per-state-450K": dict(data_states=("closed", "open"), mixture=True, target_temperature=1.5),
    "both-states": dict(data_states=("closed", "open"), mixture=False),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="?", default=Path("runs/particle-dimer-generator"), help="checkpoints (a second call resumes)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/particle-dimer-generator"), help="figures and JSON summaries")
    parser.add_argument("--variants", nargs="+", default=["per-state", "closed-only"], choices=list(VARIANTS))
    parser.add_argument("--ml-iterations", type=int, default=ParticleDimerSettings.ml_iterations)
    parser.add_argument("--kl-iterations", type=int, default=ParticleDimerSettings.kl_iterations)
    parser.add_argument("--samples", type=int, default=ParticleDimerSettings.n_samples, help="generator samples per temperature")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for variant in args.variants:
        settings = ParticleDimerSettings(
            **VARIANTS[variant], ml_iterations=args.ml_iterations, kl_iterations=args.kl_iterations,
            n_samples=args.samples, seed=args.seed,
        )
        started = time.perf_counter()
        # trainings are shared between variants: their checkpoints are named by state, one folder per target temperature
        folder = args.runs / ("trainings" if settings.target_temperature == 1.0 else f"trainings-{300 * settings.target_temperature:g}K")
        try:
            report = run_particle_dimer(settings, progress=False, checkpoint_dir=folder, log=lambda line: print(f"[{variant}] {line}", flush=True))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        args.results.mkdir(parents=True, exist_ok=True)
        figure = plot_particle_dimer(report, args.results / f"{variant}.png")
        summary = {"variant": variant, **report.to_dict(), "wall_time_this_call_s": time.perf_counter() - started,
                   "command": "python scripts/run_particle_dimer_generator.py " + " ".join(sys.argv[1:] if argv is None else argv)}
        (args.results / f"{variant}.json").write_text(json.dumps(summary, indent=1))
        print(f"[{variant}]\n{report.summary()}\nfigure {figure}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
