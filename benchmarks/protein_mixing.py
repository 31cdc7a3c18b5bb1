"""Folding transitions of the trpzip2 C-alpha Go model near its melting point: GHMC alone vs GHMC + BG move.

On ``trpzip2-go`` at ``--temperature`` (default 349.7 K, the reference temperature nearest
the melting point, about 358 K) it runs, on the same budget of energy evaluations and from
the native structure, ``--repeats`` independent chains of each arm:

* **MD**: ``SeededGHMCMove`` (openmmtools ``GHMCMove``, 15 fs, 5/ps, the sampler of the
  tempering reference) in cycles of ``--md-steps`` steps;
* **MD + BG**: ``SequenceMove([SeededGHMCMove(n_steps=--bg-md-steps),
  BoltzmannGeneratorMove(n_proposals=--proposals)])``
  (:func:`openmm_bg.recipes.go_model.run_chain`).

Energy evaluations: one per GHMC step and ``n_proposals + 1`` per BG application.
Q is recorded after every cycle (``--md-steps`` defaults to ``--bg-md-steps``, so both arms
record at least as often as MD alone would need).

**Transitions** are entries into one Q core after the other was the last visited
(:func:`benchmarks.two_state.core_history` on
:func:`~openmm_bg.recipes.go_model.q_cores`: unfolded Q <= 0.35, folded Q >= 0.75, a dead
zone between), pooled over repeats, per 10^6 evaluations with 95 % Poisson ranges, and per
wall-clock second.  **dF(unfolded - folded)** of each chain comes from its folded fraction
(:func:`~openmm_bg.recipes.go_model.folding_from_chain`); the error at equal cost is the
standard deviation of the repeats' dF (and, beside it, the mean error each chain claims from
its statistical inefficiency), compared with the tempering reference at that temperature.

The generator (``--generator``) is a checkpoint of ``scripts/run_go_generator.py`` trained at
``--temperature``; its training cost (tempering data and training) is printed and not part
of the sampling budget.

Run from the repository root::

    OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.protein_mixing
    python -m benchmarks.protein_mixing --budget 20000 --repeats 1      # smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.two_state import core_history, poisson_interval

DEFAULT_GENERATOR = "runs/go-generator/generator_T5_349.7K.pt"
REFERENCE = Path("benchmarks/results/go-model-reference/reference.json")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default=DEFAULT_GENERATOR, help="generator checkpoint trained at --temperature (scripts/run_go_generator.py)")
    parser.add_argument("--temperature", type=float, default=None, help="K (default: the reference temperature nearest 358 K)")
    parser.add_argument("--budget", type=int, default=300_000, help="energy evaluations per chain, both arms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--md-steps", type=int, default=None, help="GHMC steps per recorded cycle, MD arm (default: --bg-md-steps)")
    parser.add_argument("--bg-md-steps", type=int, default=50, help="GHMC steps per cycle, MD + BG arm")
    parser.add_argument("--proposals", type=int, default=100, help="BG proposals per cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    for name in ("budget", "repeats", "bg_md_steps", "proposals"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.md_steps is not None and args.md_steps < 1:
        parser.error("--md-steps must be positive")
    if not Path(args.generator).is_file():
        parser.error(f"generator checkpoint not found: {args.generator} (run scripts/run_go_generator.py first)")
    return args


def transitions(q: np.ndarray) -> int:
    """Folding plus unfolding transitions of a Q series (core entries after the other core)."""
    from openmm_bg.recipes.go_model import q_cores

    history = core_history(q_cores(q))
    return int(history["n_ab"] + history["n_ba"])


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    from openmm_bg.generator.checkpoints import read_torch_file
    from openmm_bg.recipes.go_model import folding_from_chain, go_molecule, load_go_reference, run_chain

    reference = load_go_reference(REFERENCE)
    temperature = args.temperature
    if temperature is None:
        temperature = float(reference["temperatures"][np.argmin(np.abs(reference["temperatures"] - 358.0))])
    metadata = read_torch_file(args.generator, "generator checkpoint").get("metadata") or {}
    trained_at = float(metadata.get("temperature_K", temperature))
    if abs(trained_at - temperature) > 1e-6:
        print(f"note: the generator was trained at {trained_at:.1f} K; the move proposes at the relative temperature {temperature / trained_at:.3f}")
    print(f"generator: {args.generator}; trained at {trained_at:.1f} K on {metadata.get('n_frames', '?')} frames, "
          f"{metadata.get('energy_evaluations', 0):,} training energy evaluations (not part of the sampling budget)")
    molecule = go_molecule(temperature)
    md_steps = args.md_steps or args.bg_md_steps
    arms = {"MD": [], "MD + BG": []}
    for r in range(args.repeats):
        seed = args.seed + 100 * r
        arms["MD"].append(run_chain(molecule, molecule.positions, args.budget, md_steps=md_steps, seed=seed))
        arms["MD + BG"].append(run_chain(molecule, molecule.positions, args.budget, md_steps=args.bg_md_steps, proposals=args.proposals,
                                         generator=args.generator, reference_temperature=trained_at, seed=seed))
        print(f"repeat {r}: MD {transitions(arms['MD'][-1]['q'])} transitions, MD + BG {transitions(arms['MD + BG'][-1]['q'])}", flush=True)

    k = int(np.argmin(np.abs(reference["temperatures"] - temperature)))
    ref_df, ref_err = float(reference["dF"][k]), float(reference["dF_err"][k])
    print(f"\ntrpzip2-go at {temperature:.1f} K; {args.repeats} chains per arm of {args.budget:,} energy evaluations from the native; "
          f"cycles of {md_steps} GHMC steps (MD) and {args.bg_md_steps} GHMC steps + {args.proposals} BG proposals (MD + BG)")
    print("transitions: entries into the folded (Q >= 0.75) or unfolded (Q <= 0.35) core after the other")
    print(f"{'':9s}{'evaluations':>12s}{'transitions':>12s}{'per 1e6 evals':>15s}{'95 % range':>21s}{'per s':>9s}{'wall s':>8s}"
          f"{'accept %':>9s}{'dF (kT), repeats':>26s}{'sd':>7s}{'claimed':>9s}")
    figures = {}
    for name, chains in arms.items():
        evaluations = sum(c["evaluations"] for c in chains)
        n = sum(transitions(c["q"]) for c in chains)
        wall = sum(c["wall_s"] for c in chains)
        low, high = poisson_interval(n)
        estimates = [folding_from_chain(c["q"], discard=len(c["q"]) // 20) for c in chains]
        dfs = np.array([e["dF"] for e in estimates])
        finite = np.isfinite(dfs)
        sd = float(np.std(dfs[finite], ddof=1)) if finite.sum() > 1 else float("nan")
        claimed = float(np.mean([e["dF_err"] for e in estimates]))
        acceptance = float(np.mean([c["acceptance"] for c in chains])) if name != "MD" else float("nan")
        figures[name] = dict(evaluations=evaluations, transitions=n, rate=1e6 * n / evaluations, rate_range=(1e6 * low / evaluations, 1e6 * high / evaluations),
                             per_second=n / wall, wall_s=wall, acceptance=acceptance, dF=dfs.tolist(), dF_mean=float(np.mean(dfs[finite])) if finite.any() else float("nan"),
                             dF_sd=sd, dF_claimed=claimed)
        f = figures[name]
        accept = f"{100 * acceptance:.2f}" if np.isfinite(acceptance) else "-"
        values = " ".join(f"{d:+.2f}" for d in dfs)
        print(f"{name:9s}{evaluations:>12,d}{n:>12d}{f['rate']:>15.4g}{f['rate_range'][0]:>10.4g} - {f['rate_range'][1]:<8.4g}{f['per_second']:>9.3g}"
              f"{wall:>8.0f}{accept:>9s}{values:>26s}{sd:>7.3f}{claimed:>9.3f}")
    md, bg = figures["MD"], figures["MD + BG"]
    if md["transitions"]:
        print(f"ratio (MD + BG) / MD, transitions per 1e6 evaluations: {bg['rate'] / md['rate']:.1f} x "
              f"(95 % range from the Poisson ranges: {bg['rate_range'][0] / md['rate_range'][1]:.1f} - {bg['rate_range'][1] / md['rate_range'][0]:.1f} x); target >= 10 x: "
              f"{'met' if bg['rate_range'][0] / md['rate_range'][1] >= 10 else 'met by the central value only' if bg['rate'] / md['rate'] >= 10 else 'not met'}")
        print(f"ratio per wall-clock second: {bg['per_second'] / md['per_second']:.1f} x")
    else:
        print(f"MD made no transition: ratio at least {bg['rate'] / md['rate_range'][1]:.1f} x (95 % upper bound of the MD rate)")
    print(f"dF at equal cost ({args.budget:,} evaluations per chain): sd over repeats MD {md['dF_sd']:.3f} kT, MD + BG {bg['dF_sd']:.3f} kT "
          f"(ratio {md['dF_sd'] / bg['dF_sd']:.1f}); mean claimed error MD {md['dF_claimed']:.3f}, MD + BG {bg['dF_claimed']:.3f} kT")
    print(f"reference dF at {reference['temperatures'][k]:.1f} K: {ref_df:+.3f} +- {ref_err:.3f} kT; "
          f"MD mean {md['dF_mean']:+.3f}, MD + BG mean {bg['dF_mean']:+.3f} kT")
    out = dict(temperature_K=temperature, settings={k: str(v) for k, v in vars(args).items()}, reference_dF=ref_df, reference_dF_err=ref_err,
               arms={name: {key: value for key, value in f.items()} for name, f in figures.items()})
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out


if __name__ == "__main__":
    main(parse_args())
