"""What dF of alanine dipeptide costs: a Boltzmann generator at growing budgets vs plain MD.

Part (a), accuracy against budget.  ``openmm_bg.recipes.demo.run_demo`` (the ``openmm-bg demo``
recipe: train on the bundled MD from both phi basins, sample, reweight) runs once per
training budget in ``--ml-iterations`` (with ``--kl-iterations``, once per pair of ML and
KL-stage budgets); all other settings are the ``DemoSettings``
defaults or a ``--config`` YAML (``--quick``: ``DemoSettings.quick()``).  For each budget it
prints the ML and KL iterations, the energy evaluations (MD that made the training data,
training, sampling, total), the wall time (training, sampling), the Kish ESS, dF =
F(phi > 0) - F(phi < 0) with its bootstrap error, the deviation from the reference and
whether it is within 0.2 kT and within twice the bootstrap error.

The reference is ``--reference-file`` (default ``data/ala2-vacuum-reference.json``, parallel
tempering): a JSON record with ``delta_f_kT`` / ``error_kT`` or ``dF_kT`` / ``dF_error_kT``
(the umbrella-sampling format), both meaning F(phi > 0) - F(phi < 0) at 300 K.  The sign
follows the demo's states (``state_a``, ``state_b``); states other than phi < 0 / phi > 0
are not compared.

Part (b), the cost headline.  The smallest budget whose dF is within 0.2 kT and within
twice its bootstrap error of the reference is set beside the MD that plain, unbiased MD
needs for the same accuracy, and their ratio is printed with and without the MD steps
that made the generator's training data (``md_steps`` of ``DemoSettings.training_data``).

How the plain-MD cost is estimated from the bundled data (:mod:`benchmarks.two_state`):

1. phi (``mdtraj.compute_phi``) of the bundled 300 K runs, read as a two-state process with
   cores A (phi < 0 state: phi <= -0.5 or phi >= 2.8 rad, the beta basin wraps past +-pi)
   and B (phi > 0 state: 0.5 <= phi <= 2.2 rad); a transition is an entry into one core
   when the last core visited was the other.
2. The two runs started in C7ax give the escape rate from B,
   ``k_BA = (exits from B) / (time with B as the last visited core)``, pooled, with the exact 95 %
   Poisson interval of the exit count (with no exit, the upper bound 3 / T only; the MD
   cost is then a lower bound).
3. Detailed balance with the reference: ``k_AB = k_BA P_B / P_A``, ``P_B / P_A = exp(-dF_ref)``;
   relaxation time ``tau = 1 / (k_AB + k_BA)``.
4. For a two-state process observed for a time T, ``var(P_B_hat) ~= 2 P_A P_B tau / T``, so
   ``sigma(dF) ~= sqrt(2 tau / (T P_A P_B))``.  MD needs ``T = 2 tau / (P_A P_B 0.1^2)`` for
   sigma(dF) = 0.1 kT (2 sigma = 0.2 kT), in steps of 1 fs, one energy evaluation each.
   The range comes from the Poisson interval of k_BA only (T is proportional to 1 / k_BA).
5. Cross-check: the predicted number of A -> B transitions, ``k_AB`` times the time with A
   last visited, in the runs started in C7eq (and the older 10 ns run) against the observed one.

Run from the repository root::

    nice -n 10 python -m benchmarks.ala2_free_energy                # about 15 min on 2 cores
    nice -n 10 python -m benchmarks.ala2_free_energy --quick        # well under a minute: a smoke test
    nice -n 10 python -m benchmarks.ala2_free_energy --ml-iterations 500 2000 --workdir runs/issue7/cost
    nice -n 10 python -m benchmarks.ala2_free_energy --ml-iterations 2000 --kl-iterations 300 3000
    nice -n 10 python -m benchmarks.ala2_free_energy --reference-file data/ala2-vacuum-umbrella-reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import two_state

from openmm_bg.recipes.demo import OUTPUT_FILES, DemoSettings, run_demo

__all__ = ["TARGET_DEVIATION", "TARGET_SIGMA", "load_reference_file", "reference_sign", "run_budgets", "budget_row", "smallest_accurate", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = ROOT / "data" / "ala2-vacuum-reference.json"
#: accuracy asked of dF: |deviation| <= 0.2 kT (and <= 2 bootstrap errors)
TARGET_DEVIATION = 0.2
#: standard error plain MD must reach: 2 sigma = 0.2 kT
TARGET_SIGMA = TARGET_DEVIATION / 2
DEFAULT_BUDGETS = (250, 500, 1000, 2000, 4000)
QUICK_BUDGETS = (50, 100, 200)


def load_reference_file(path: str | Path, temperature: float | None = None) -> dict:
    """A reference F(phi > 0) - F(phi < 0) record: ``delta_f_kT``, ``error_kT``, ``file``, ``cost`` (or None).

    Reads either format: ``delta_f_kT`` / ``error_kT`` (parallel tempering) or ``dF_kT`` /
    ``dF_error_kT`` (umbrella sampling).  ``cost`` is the record's ``energy_evaluations``
    or ``total_md_steps``.  A record for another temperature raises ``ValueError``.
    """
    path = Path(path)
    record = json.loads(path.read_text())
    for value_key, error_key in (("delta_f_kT", "error_kT"), ("dF_kT", "dF_error_kT")):
        if value_key in record and error_key in record:
            break
    else:
        raise ValueError(f"{path}: expected the keys delta_f_kT and error_kT, or dF_kT and dF_error_kT")
    t_ref = record.get("temperature_K")
    if temperature is not None and t_ref is not None and abs(float(t_ref) - float(temperature)) > 1e-6:
        raise ValueError(f"{path} is a reference at {t_ref} K, the system is at {temperature} K")
    cost = record.get("energy_evaluations", record.get("total_md_steps"))
    return dict(delta_f_kT=float(record[value_key]), error_kT=float(record[error_key]), file=str(path),
                cost=None if cost is None else int(cost), definition=record.get("definition", ""))


def reference_sign(system: str, state_a: str, state_b: str) -> float | None:
    """+1 when F(B) - F(A) is F(phi > 0) - F(phi < 0), -1 when reversed, None for other states."""
    from openmm_bg.reference.bundled import load_reference
    from openmm_bg.molecules.states import bundled_reference

    signed = bundled_reference(system, state_a, state_b)
    if signed is None:
        return None
    return float(np.sign(signed["delta_f_kT"] * load_reference(system)["delta_f_kT"]))


def run_budgets(base: DemoSettings, budgets: list, n_samples: int, workdir: Path, reference: dict | None,
                reuse: bool = False) -> list[dict]:
    """run_demo once per budget; one row of figures per budget (deviations against ``reference``).

    A budget is a number of ML iterations (the KL stage as in ``base``) or a pair
    ``(ML iterations, KL iterations)``.  With ``reuse``, a run whose ``report.json`` in
    ``workdir`` was made with exactly these settings is read instead of repeated.
    """
    rows = []
    for i, budget in enumerate(budgets):
        n_ml, n_kl = (budget, None) if np.ndim(budget) == 0 else budget
        changes = {"ml": {"n_iterations": int(n_ml)}, "n_samples": int(n_samples)}
        name = f"ml-{n_ml}"
        if n_kl is not None:
            changes["kl"] = {"n_iterations": int(n_kl)}
            name += f"-kl-{n_kl}"
        settings = DemoSettings.from_dict(changes, base)
        done = workdir / name / OUTPUT_FILES["report"]
        report = json.loads(done.read_text()) if reuse and done.is_file() else None
        if report is not None and report["settings"] == settings.to_dict():
            print(f"[{i + 1}/{len(budgets)}] reading {done} (same settings)", file=sys.stderr, flush=True)
        else:
            start = time.perf_counter()
            print(f"[{i + 1}/{len(budgets)}] run_demo with {n_ml} ML + {settings.kl['n_iterations']} KL iterations -> {workdir / name}",
                  file=sys.stderr, flush=True)
            report = run_demo(settings, workdir / name, progress=False).to_dict()
            print(f"      done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        rows.append(budget_row(report, reference))
    return rows


def budget_row(report: dict, reference: dict | None) -> dict:
    """The figures of one run (``DemoReport.to_dict()``, as in report.json), compared with ``reference``."""
    settings = report["settings"]
    delta_f, error = report["delta_f"], report["delta_f_error"]
    deviation = None if reference is None or delta_f is None else delta_f - reference["delta_f_kT"]
    combined = None if reference is None or error is None else math.hypot(error, reference["error_kT"])
    return dict(
        ml_iterations=settings["ml"]["n_iterations"], kl_iterations=settings["kl"]["n_iterations"],
        evaluations=dict(report["energy_evaluations"]), wall=dict(report["wall_time_s"]),
        ess=report["kish_ess"], n_samples=report["n_samples"], delta_f=delta_f, error=error, deviation=deviation,
        within_0_2=None if deviation is None else bool(abs(deviation) <= TARGET_DEVIATION),
        within_2_sigma=None if deviation is None else bool(abs(deviation) <= 2 * error),
        within_2_combined=None if deviation is None else bool(abs(deviation) <= 2 * combined),
        note=report["note"], frames=report["n_frames"],
    )


def smallest_accurate(rows: list[dict], sigma: str = "within_2_sigma") -> dict | None:
    """The smallest training budget (fewest ML iterations, then fewest energy evaluations) within 0.2 kT and 2 sigma; None if none.

    ``sigma`` names the 2-sigma test: ``"within_2_sigma"`` (the generator's error alone) or
    ``"within_2_combined"`` (generator and reference errors combined).
    """
    good = [row for row in rows if row["within_0_2"] and row[sigma]]
    return min(good, key=lambda row: (row["ml_iterations"], row["evaluations"]["total"])) if good else None


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _sci(x: float) -> str:
    return f"{x:.2e}"


def print_table(rows: list[dict], reference: dict | None) -> None:
    ref = "no reference" if reference is None else f"reference {reference['delta_f_kT']:.3f} +- {reference['error_kT']:.3f} kT ({Path(reference['file']).name})"
    print(f"\n(a) accuracy against training budget; dF = F(B) - F(A), {ref}")
    header = (f"{'ML it':>6s}{'KL it':>6s} | {'MD data':>11s}{'training':>10s}{'sampling':>10s}{'total':>12s} | "
              f"{'train s':>8s}{'sample s':>9s} | {'ESS %':>7s} | {'dF +- error (kT)':>17s}{'deviation':>10s}{'<=0.2kT':>8s}{'<=2sig':>7s}{'<=2sig+ref':>11s}")
    print(f"{'':12s} | {'energy evaluations':^43s} | {'wall time':^17s} |")
    print(header)
    print("-" * len(header))
    for r in rows:
        e, w = r["evaluations"], r["wall"]
        df = "-" if r["delta_f"] is None else f"{r['delta_f']:7.3f} +- {r['error']:.3f}"
        dev = "-" if r["deviation"] is None else f"{r['deviation']:+.3f}"
        print(f"{r['ml_iterations']:>6d}{r['kl_iterations']:>6d} | {e['md_data']:>11,d}{e['training']:>10,d}{e['sampling']:>10,d}{e['total']:>12,d} | "
              f"{w['training']:>8.1f}{w['sampling']:>9.1f} | {100 * r['ess']:>7.3f} | {df:>17s}{dev:>10s}{_yes(r['within_0_2']):>8s}{_yes(r['within_2_sigma']):>7s}{_yes(r['within_2_combined']):>11s}")
        if r["note"]:
            print(f"{'':14s}note: {r['note']}")
    print("MD data: MD steps that made the training frames (counted whatever the stride); "
          "training: energies of KL samples; 2sig: within twice the generator's bootstrap error alone; 2sig+ref: within twice the root sum of squares of the generator's and the reference's errors")


def print_md_estimate(est: dict) -> None:
    k, c, fast, slow = est["k_ba"], est["central"], est["fast"], est["slow"]
    conf = f"{100 * est['confidence']:.0f} %"
    print("\nplain MD, estimated from the bundled MD (two-state model; cores A: phi <= -0.5 or >= 2.8 rad, B: 0.5 <= phi <= 2.2 rad)")
    print(f"  {'run':8s}{'length':>9s}{'frame':>8s}{'A->B':>6s}{'B->A':>6s}{'with A last':>13s}{'with B last':>13s}  what")
    for name, r in est["runs"].items():
        print(f"  {name:8s}{r['time_ns']:>6.1f} ns{r['dt_ps']:>5.1f} ps{r['n_ab']:>6d}{r['n_ba']:>6d}"
              f"{r['frames_last_a'] * r['dt_ps'] / 1000:>10.3f} ns{r['frames_last_b'] * r['dt_ps'] / 1000:>10.3f} ns  {two_state.BUNDLED_RUNS[name][2]}")
    run = est["escape_run"]
    if k["upper_bound_only"]:
        print(f"  escape rate from B ({run}): no exit in {k['time']:.3f} ns; k_BA <= 3 / T = {k['rate']:.3g} /ns ({conf} Poisson upper bound, used as the rate: MD cost below is a LOWER bound)")
    else:
        print(f"  escape rate from B ({run}): k_BA = {k['n']} / {k['time']:.3f} ns = {k['rate']:.3g} /ns ({conf} Poisson range {k['low']:.3g} - {k['high']:.3g} /ns)")
    tau = f"= {c['tau']:.3g} ns ({fast['tau']:.3g} - {slow['tau']:.3g} ns)" if slow else f">= {c['tau']:.3g} ns"
    print(f"  detailed balance with dF_ref = {est['delta_f']:.3f} kT: P_B = {c['p_b']:.4f}, k_AB = k_BA P_B / P_A = {c['k_ab']:.3g} /ns, "
          f"tau = 1 / (k_AB + k_BA) {tau}")
    for name, check in est["checks"].items():
        p_zero = math.exp(-check["predicted"]) if check["observed"] == 0 else None
        extra = f"; P(0 | predicted) = {100 * p_zero:.0f} %" if p_zero is not None else ""
        print(f"  cross-check {name}: A -> B transitions in {check['time_a_ns']:.1f} ns with A last: observed {check['observed']}, "
              f"predicted k_AB T = {check['predicted']:.3g} ({check['predicted_low']:.2g} - {check['predicted_high']:.2g}){extra}")
    s = est["sigma"]
    steps = c["md_steps"]
    range_text = f" ({conf} range {_sci(fast['md_steps'])} - {_sci(slow['md_steps'])})" if slow else " (lower bound)"
    print(f"  MD for sigma(dF) = {s:g} kT (2 sigma = {2 * s:g} kT): T = 2 tau / (P_A P_B sigma^2) = {c['md_time_ns']:,.0f} ns "
          f"= {_sci(steps)} steps of 1 fs = energy evaluations{range_text}")


def print_headline(rows: list[dict], est: dict, reference: dict | None) -> None:
    c, fast, slow = est["central"], est["fast"], est["slow"]
    print(f"\n(b) cost of dF within {TARGET_DEVIATION:g} kT and 2 sigma of the reference")
    if reference is not None and reference.get("cost"):
        print(f"  the reference itself ({Path(reference['file']).name}): {reference['cost']:,} energy evaluations")
    best = smallest_accurate(rows)
    md = c["md_steps"]
    md_text = f"{_sci(md)} energy evaluations" + (f" (95 % range {_sci(fast['md_steps'])} - {_sci(slow['md_steps'])})" if slow else " (at least: no escape observed)")
    print(f"  plain MD, estimated from the bundled data:       {md_text}")
    if best is None:
        best = smallest_accurate(rows, "within_2_combined")
        if best is None:
            print("  generator: no budget reached the accuracy; no ratio (try larger --ml-iterations or --n-samples)")
            return
        print("  generator: no budget is within twice its own bootstrap error; the figures below use twice the combined "
              "error of generator and reference instead")
    e, w = best["evaluations"], best["wall"]
    own = e["training"] + e["sampling"]
    print(f"  generator, smallest budget that reached it:      {best['ml_iterations']} ML + {best['kl_iterations']} KL iterations, "
          f"{best['n_samples']:,} samples, dF {best['delta_f']:.3f} +- {best['error']:.3f} kT (deviation {best['deviation']:+.3f})")
    print(f"    with the MD that made its training data:       {e['total']:,} energy evaluations ({e['md_data']:,} MD + {e['training']:,} training + {e['sampling']:,} sampling)")
    print(f"    without it (training + sampling only):         {own:,} energy evaluations")
    print(f"    wall time:                                     {w['training']:.0f} s training + {w['sampling']:.0f} s sampling = {w['training'] + w['sampling']:.0f} s (the MD data's wall time not included)")
    for label, cost in (("with MD data", e["total"]), ("without MD data", own)):
        rng = f" (95 % range {fast['md_steps'] / cost:,.0f} - {slow['md_steps'] / cost:,.0f} x)" if slow else " (a lower bound)"
        if cost > 0:
            print(f"  ratio MD / generator, {label + ':':17s}{'':10s}{md / cost:,.0f} x{rng}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ml-iterations", type=int, nargs="+", default=None,
                        help=f"training budgets, ML iterations (default {' '.join(map(str, DEFAULT_BUDGETS))}; --quick: {' '.join(map(str, QUICK_BUDGETS))})")
    parser.add_argument("--kl-iterations", type=int, nargs="+", default=None,
                        help="KL-stage budgets (default: the settings' own, 300); every ML budget runs with every KL budget")
    parser.add_argument("--n-samples", type=int, default=None, help="generator samples per budget (default 100000; --quick: 3000)")
    parser.add_argument("--config", type=Path, default=None, help="demo settings YAML (DemoSettings.from_yaml) over the defaults, or over the quick settings with --quick")
    parser.add_argument("--quick", action="store_true", help="DemoSettings.quick(), small budgets and 3000 samples: well under a minute")
    parser.add_argument("--workdir", type=Path, default=None, help="keep each run's outputs in WORKDIR/ml-N (default: a temporary folder, removed)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --workdir: read a budget's report.json made with the same settings instead of running it again "
                        "(to compare finished runs with another --reference-file, or to resume)")
    parser.add_argument("--reference-file", type=Path, default=DEFAULT_REFERENCE, help="reference JSON (delta_f_kT/error_kT or dF_kT/dF_error_kT)")
    args = parser.parse_args(argv)
    if args.ml_iterations is None:
        args.ml_iterations = list(QUICK_BUDGETS if args.quick else DEFAULT_BUDGETS)
    if args.n_samples is None:
        args.n_samples = 3000 if args.quick else 100_000
    if min(args.ml_iterations) < 1 or args.n_samples < 1:
        parser.error("--ml-iterations and --n-samples must be positive")
    if args.reuse and args.workdir is None:
        parser.error("--reuse needs --workdir")
    if args.kl_iterations is not None and min(args.kl_iterations) < 0:
        parser.error("--kl-iterations must be 0 or more")
    if not args.reference_file.is_file():
        parser.error(f"reference file not found: {args.reference_file}")
    return args


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = DemoSettings.quick() if args.quick else DemoSettings()
    if args.config is not None:
        base = DemoSettings.from_yaml(args.config, base)
    from openmm_bg.molecules.systems import get_system

    molecule = get_system(base.system)
    raw = load_reference_file(args.reference_file, molecule.temperature)
    sign = reference_sign(base.system, base.state_a, base.state_b)
    reference = None if sign is None else dict(raw, delta_f_kT=sign * raw["delta_f_kT"])
    budgets = sorted(set(args.ml_iterations))
    if args.kl_iterations is not None:
        budgets = [(ml, kl) for ml in budgets for kl in sorted(set(args.kl_iterations))]

    print(f"system {base.system}; states A = {base.state_a}, B = {base.state_b}; architecture {base.architecture}; "
          f"ML {dict(base.ml, n_iterations='varied')}; KL {base.kl if args.kl_iterations is None else dict(base.kl, n_iterations='varied')}; "
          f"{args.n_samples:,} samples per budget"
          + (" (--quick)" if args.quick else "") + (f"; config {args.config}" if args.config else ""))
    if sign is None:
        print("the states are not phi < 0 / phi > 0: no comparison with the reference")

    with tempfile.TemporaryDirectory(prefix="ala2-cost-") as scratch:
        workdir = args.workdir or Path(scratch)
        rows = run_budgets(base, budgets, args.n_samples, workdir, reference, reuse=args.reuse)
    print_table(rows, reference)
    estimate = two_state.md_cost_estimate(raw["delta_f_kT"], sigma=TARGET_SIGMA)  # always F(phi > 0) - F(phi < 0)
    print_md_estimate(estimate)
    print_headline(rows, estimate, reference)
    print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")
    return dict(rows=rows, md_estimate=estimate, reference=reference)


if __name__ == "__main__":
    main(parse_args())
