"""Kish ESS per energy-evaluation budget: our generators beside the published state of the art.

For each system it trains ``--repeats`` generators with independent seeds by the demo's
recipe (``openmm_bg.recipes.demo.run_demo``: ``DemoSettings`` defaults, or ``--config
DEMO.yaml`` on top), and prints for each:

* the Kish ESS of 10^5 fresh samples (the demo's own draw, ``n_samples``), and their mean
  and standard deviation over the repeats;
* dF = F(phi > 0) - F(phi < 0) against the bundled reference, and the ensemble's dF with an
  error that covers the training-to-training spread (``openmm_bg.analysis.combine_trainings``);
* energy evaluations: the MD that made the training data, training, sampling, and in all;
* wall time and CPU time of the run;

and, side by side, the published anchors on alanine dipeptide (ff96 + OBC1, no constraints,
300 K; Kish ESS at their budgets of target evaluations), with the ratio of our mean ESS to
theirs and of our evaluations to theirs.  The anchors were measured on ``ala2-implicit``;
this package's recipe has bundled data for ``ala2-vacuum`` only, so the comparison is across
Hamiltonians, and the script says so.

Runs are resumable: each repeat writes its outputs to ``WORKDIR/SYSTEM/seed-N`` and a run
whose ``report.json`` exists is read back instead of trained again (CPU time is then what
that run recorded).  Run from the repository root::

    nice -n 19 python -m benchmarks.ess_budget                                  # 3 x the demo, about 45 min on 2 cores
    nice -n 19 python -m benchmarks.ess_budget --workdir runs/ess --repeats 5
    python -m benchmarks.ess_budget --quick --repeats 2 --workdir /tmp/ess       # smoke test, about a minute
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from openmm_bg.analysis import combine_trainings
from openmm_bg.recipes.demo import DemoSettings, run_demo

__all__ = ["ANCHORS", "run_repeat", "main"]

#: Published Kish ESS and target energy evaluations on alanine dipeptide (ff96 + OBC1, no constraints, 300 K)
ANCHORS = (
    ("constrained mass transport (2025)", 0.977, 1e8),
    ("temperature-annealed BG (TA-BG, 2025)", 0.958, 1e8),
    ("FAB (Midgley et al. 2023)", 0.948, 2.1e8),
    ("reverse KL (as reported by FAB)", 0.941, 2.6e8),
    ("maximum likelihood on MD (as reported by FAB)", 0.821, 5e9),
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_repeat(settings: DemoSettings, folder: Path) -> dict:
    """One training with ``settings`` in ``folder``, or the record of an earlier one there."""
    record_path = folder / "ess_budget.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    wall, cpu = time.perf_counter(), _cpu_seconds()
    report = run_demo(settings, folder, progress=False)
    record = {
        "seed": settings.seed, "system": report.system, "kish_ess": report.kish_ess, "n_samples": report.n_samples,
        "delta_f": report.delta_f, "delta_f_error": report.delta_f_error, "reference": report.reference,
        "k_hat": report.state_stats.get("k_hat"), "warnings": report.warnings,
        "energy_evaluations": report.energy_evaluations, "wall_s": time.perf_counter() - wall, "cpu_s": _cpu_seconds() - cpu,
    }
    record_path.write_text(json.dumps(record, indent=1))
    return record


def _row(record: dict) -> str:
    e = record["energy_evaluations"]
    df = "not estimated" if record["delta_f"] is None else f"{record['delta_f']:.3f} +- {record['delta_f_error']:.3f}"
    return (f"  seed {record['seed']:<3d} ESS {100 * record['kish_ess']:6.2f} %   dF {df:>16s} kT   evaluations "
            f"{e['md_data']:.2e} MD + {e['training']:.2e} training + {e['sampling']:.2e} sampling = {e['total']:.2e}   "
            f"wall {record['wall_s']:7.0f} s  CPU {record['cpu_s']:7.0f} s")


def main(args: argparse.Namespace) -> dict:
    base = DemoSettings.quick() if args.quick else DemoSettings()
    if args.config is not None:
        base = DemoSettings.from_yaml(args.config, base)
    results = {}
    for system in args.systems:
        records = []
        print(f"{system}: {args.repeats} trainings by the demo's recipe{' (quick)' if args.quick else ''}", flush=True)
        for k in range(args.repeats):
            settings = DemoSettings.from_dict({"system": system, "seed": args.first_seed + k}, base)
            record = run_repeat(settings, args.workdir / system / f"seed-{settings.seed}")
            records.append(record)
            print(_row(record), flush=True)
        ess = np.array([r["kish_ess"] for r in records])
        totals = np.array([r["energy_evaluations"]["total"] for r in records], dtype=float)
        dfs = [r["delta_f"] for r in records if r["delta_f"] is not None]
        spread = float(ess.std(ddof=1)) if ess.size > 1 else float("nan")
        print(f"  mean ESS {100 * ess.mean():.2f} % (sd {100 * spread:.2f} % over {ess.size}), mean evaluations {totals.mean():.3g}")
        reference = records[0]["reference"]
        finished = [r for r in records if r["delta_f"] is not None]
        if len(finished) > 1:
            # one estimate from the ensemble, with an error that sees the training-to-training spread
            ensemble = combine_trainings([r["delta_f"] for r in finished], [r["delta_f_error"] for r in finished])
            print(f"  dF of the ensemble {ensemble['value']:.3f} +- {ensemble['error']:.3f} kT (spread of {ensemble['n']} trainings "
                  f"{ensemble['error_spread']:.3f}, their bootstraps {ensemble['error_bootstrap']:.3f}; openmm_bg.analysis.combine_trainings)")
        if dfs and reference is not None:
            sd = float(np.std(dfs, ddof=1)) if len(dfs) > 1 else float("nan")
            print(f"  dF mean {np.mean(dfs):.3f} kT, sd over trainings {sd:.3f} kT; reference {reference['delta_f_kT']:.3f} +- "
                  f"{reference['error_kT']:.3f} kT ({Path(reference['file']).name}); mean deviation {np.mean(dfs) - reference['delta_f_kT']:+.3f} kT")
        if system != "ala2-implicit":
            print("  (the anchors below were measured on ala2-implicit, this row on " + system + ": a comparison across Hamiltonians)")
        print(f"  {'published anchor':<48s}{'ESS':>8s}{'evaluations':>14s}{'our ESS / theirs':>18s}{'our evals / theirs':>20s}")
        for name, anchor_ess, anchor_evals in ANCHORS:
            print(f"  {name:<48s}{100 * anchor_ess:7.1f}%{anchor_evals:14.2g}{ess.mean() / anchor_ess:18.2f}{totals.mean() / anchor_evals:20.3f}")
        results[system] = {"records": records, "mean_ess": float(ess.mean()), "sd_ess": spread, "mean_evaluations": float(totals.mean())}
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=["ala2-vacuum"], help="systems with a demo recipe (default ala2-vacuum)")
    parser.add_argument("--repeats", type=int, default=3, help="independently seeded trainings per system (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first training (default 0)")
    parser.add_argument("--config", type=Path, default=None, help="demo settings YAML applied over the defaults")
    parser.add_argument("--quick", action="store_true", help="the demo's tiny budget (a smoke test)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/ess_budget"), help="where the trainings live; existing ones are reused (default runs/ess_budget)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    return args


if __name__ == "__main__":
    main(parse_args())
    sys.exit(0)
