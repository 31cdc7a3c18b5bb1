"""Boltzmann generators for the C-alpha Go model of trpzip2: folded fraction against temperature, checked against the reference.

For each temperature of the tempering reference (``benchmarks/results/go-model-reference``)
the script

1. trains one generator of the bead chain in internal coordinates at that temperature
   (:func:`openmm_bg.recipes.go_model.train_go_generator`) on tempering frames at that
   temperature (default: the 8 repeats of the reference run, read only; ``--data`` names
   other ``run_parallel_tempering`` files);
2. draws ``--samples`` samples and estimates the folded fraction and dF(unfolded - folded)
   from their importance weights, with the bootstrap error and the k-hat / ESS diagnostics
   (:func:`~openmm_bg.recipes.go_model.folding_from_generator`);
3. runs GHMC mixed with a BoltzmannGeneratorMove of that generator for ``--chain-budget``
   energy evaluations, from the native structure, and estimates the same from the chain
   (:func:`~openmm_bg.recipes.go_model.run_chain`, error from the statistical inefficiency);

then prints both against the reference with z-scores against the combined sigma, and writes
``folding.json`` (a copy in ``--results``) and ``fraction_folded.png`` (in the run folder only).  Every step writes its output to the run folder and is skipped
when that output exists, so running the command again resumes.

Example (the committed results; about 15 minutes on one loaded core; the default
training data are the reference's own runs in runs/go-model/reference)::

    OMP_NUM_THREADS=1 nice -n 5 python scripts/run_go_generator.py runs/go-generator --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path("benchmarks/results/go-model-generator")
DEFAULT_DATA = [f"runs/go-model/reference/repeat{r}.nc" for r in range(8)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run folder (generators, samples' estimates, chains)")
    parser.add_argument("--reference", type=Path, default=Path("benchmarks/results/go-model-reference/reference.json"))
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA, help="parallel-tempering runs at the reference temperatures (training frames)")
    parser.add_argument("--discard", type=int, default=100, help="iterations dropped at the start of each tempering run")
    parser.add_argument("--data-iterations", type=int, default=1500, help="use iterations below this of each tempering run")
    parser.add_argument("--ml-iterations", type=int, default=400)
    parser.add_argument("--kl-iterations", type=int, default=0, help="iterations by example and energy after the ML stage (0: none; see openmm_bg.recipes.go_model)")
    parser.add_argument("--samples", type=int, default=30000, help="generator samples per temperature")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--chain-budget", type=int, default=100000, help="energy evaluations of the GHMC + BG chain per temperature (0: skip)")
    parser.add_argument("--chain-md-steps", type=int, default=50)
    parser.add_argument("--chain-proposals", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(RESULTS), help="folder for the small committed results ('' for none)")
    args = parser.parse_args(argv)
    for name in ("ml_iterations", "samples", "bootstrap", "chain_md_steps", "chain_proposals"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("kl_iterations", "chain_budget", "discard", "seed"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    missing = [path for path in args.data if not Path(path).is_file()]
    if missing:
        parser.error(f"tempering run not found: {missing[0]}")
    if not args.reference.is_file():
        parser.error(f"reference not found: {args.reference}")
    return args


def _json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, default=float) + "\n")


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    from openmm_bg.generator.checkpoints import load_generator
    from openmm_bg.energies import OpenMMEnergy
    from openmm_bg.recipes.go_model import (
        folding_from_chain, folding_from_generator, go_molecule, load_go_reference, read_tempering_positions, run_chain, train_go_generator,
    )

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    reference = load_go_reference(args.reference)
    temperatures = reference["temperatures"]
    frames = None
    rows = []
    for k, temperature in enumerate(temperatures):
        molecule = go_molecule(temperature)
        tag = f"T{k}_{temperature:.1f}K"
        checkpoint = out / f"generator_{tag}.pt"
        if not checkpoint.is_file():
            if frames is None:
                frames = read_tempering_positions(args.data, args.discard, args.data_iterations)
                print(f"training frames: {frames.shape[1]} per temperature from {len(args.data)} tempering runs", flush=True)
            start = time.perf_counter()
            training = train_go_generator(
                molecule, frames[k], seed=args.seed + 10 * k,
                ml={"n_iterations": args.ml_iterations, "validate_every": 25, "keep": "best"},
                kl={"n_iterations": args.kl_iterations, "validate_every": 50},
            )
            training.save(checkpoint, molecule, {"go_generator": {"temperature_K": float(temperature), "data": list(args.data)}})
            history = [h for trainer in training.trainers for h in trainer.history if "ml_validation" in h]
            _json(out / f"training_{tag}.json", {"wall_s": training.wall_time_s, "n_frames": training.n_frames, "energy_evaluations": training.energy_evaluations,
                                                 "best_ml_validation": min(h["ml_validation"] for h in history), "history": history})
            print(f"{tag}: trained in {time.perf_counter() - start:.0f} s", flush=True)
        energy = OpenMMEnergy(molecule.system, temperature, platform=molecule.platform)
        estimate_file = out / f"estimate_{tag}.json"
        if not estimate_file.is_file():
            generator = load_generator(checkpoint, energy).eval()
            (row,) = folding_from_generator(generator, temperature, [temperature], molecule.collective_variables["q_native"],
                                            n_samples=args.samples, n_bootstrap=args.bootstrap, seed=args.seed + 1000 * (k + 1))
            _json(estimate_file, row)
        row = json.loads(estimate_file.read_text())
        chain_file = out / f"chain_{tag}.npz"
        if args.chain_budget and not chain_file.is_file():
            chain = run_chain(molecule, molecule.positions, args.chain_budget, md_steps=args.chain_md_steps, proposals=args.chain_proposals,
                              generator=checkpoint, seed=args.seed + 7 + k)
            np.savez(chain_file, q=chain["q"], evaluations=chain["evaluations"], acceptance=chain["acceptance"], wall_s=chain["wall_s"])
        if chain_file.is_file():
            chain = np.load(chain_file)
            row["chain"] = {**folding_from_chain(chain["q"], discard=len(chain["q"]) // 20), "evaluations": int(chain["evaluations"]),
                            "acceptance": float(chain["acceptance"]), "wall_s": float(chain["wall_s"])}
        training_file = out / f"training_{tag}.json"
        if training_file.is_file():
            record = json.loads(training_file.read_text())
            row["training"] = {key: record[key] for key in ("wall_s", "n_frames", "energy_evaluations", "best_ml_validation")}
        rows.append(row)
        print(f"{tag}: p_folded {row['p_folded']:.4f} +- {row['p_folded_err']:.4f} (ESS {100 * row['kish_ess']:.2f} %, k-hat {row['k_hat']:.2f})", flush=True)

    return report(rows, reference, args)


def report(rows: list[dict], reference: dict, args: argparse.Namespace) -> dict:
    from openmm_bg.recipes.go_model import compare_with_reference

    t = reference["temperatures"]
    gen_p, gen_e = np.array([r["p_folded"] for r in rows]), np.array([r["p_folded_err"] for r in rows])
    gen_df, gen_dfe = np.array([r["dF"] for r in rows]), np.array([r["dF_err"] for r in rows])
    z_gen = compare_with_reference(gen_p, gen_e, reference["p_folded"], reference["p_folded_err"])
    z_gen_df = compare_with_reference(gen_df, gen_dfe, reference["dF"], reference["dF_err"])
    has_chain = all("chain" in r for r in rows)
    print("\nFolded fraction (q_native > 0.5) and dF = F(unfolded) - F(folded) in kT; errors 1 sigma; z against the combined sigma")
    print(f"{'T (K)':>7s} {'reference':>16s} {'generator (IS)':>16s} {'z':>6s} {'ESS %':>6s} {'k-hat':>6s} {'dF ref':>14s} {'dF generator':>14s} {'z':>6s}"
          + (f" {'GHMC + BG':>16s} {'z':>6s} {'accept %':>8s}" if has_chain else ""))
    z_chain = []
    for k, r in enumerate(rows):
        line = (f"{t[k]:7.1f} {reference['p_folded'][k]:8.4f}+-{reference['p_folded_err'][k]:.4f} {r['p_folded']:8.4f}+-{r['p_folded_err']:.4f} "
                f"{z_gen[k]:+6.2f} {100 * r['kish_ess']:6.2f} {r['k_hat']:6.2f} {reference['dF'][k]:+7.3f}+-{reference['dF_err'][k]:.3f} "
                f"{r['dF']:+7.3f}+-{r['dF_err']:.3f} {z_gen_df[k]:+6.2f}")
        if has_chain:
            c = r["chain"]
            zc = float(compare_with_reference(c["p_folded"], c["p_folded_err"], reference["p_folded"][k], reference["p_folded_err"][k]))
            z_chain.append(zc)
            line += f" {c['p_folded']:8.4f}+-{c['p_folded_err']:.4f} {zc:+6.2f} {100 * c['acceptance']:8.2f}"
        print(line)
    within = np.abs(z_gen) <= 2
    print(f"generator within the combined 2 sigma at {int(within.sum())} of {len(rows)} temperatures (max |z| {np.abs(z_gen).max():.2f})"
          + (f"; GHMC + BG at {int((np.abs(z_chain) <= 2).sum())} of {len(rows)} (max |z| {np.abs(z_chain).max():.2f})" if has_chain else ""))
    flagged = [f"{t[k]:.1f} K" for k, r in enumerate(rows) if r["warnings"]]
    if flagged:
        print(f"weights flagged by the diagnostics (k-hat above threshold or too few effective samples in a state) at: {', '.join(flagged)}")
    summary = {
        "what": "trpzip2 C-alpha Go model: folded fraction from per-temperature Boltzmann generators (importance weights) and from GHMC + BoltzmannGeneratorMove chains, against the tempering reference",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "temperatures_K": t.tolist(),
        "reference": {"p_folded": reference["p_folded"].tolist(), "p_folded_err": reference["p_folded_err"].tolist(),
                      "dF": reference["dF"].tolist(), "dF_err": reference["dF_err"].tolist()},
        "generator": rows, "z_generator_p_folded": z_gen.tolist(), "z_generator_dF": z_gen_df.tolist(),
        "z_chain_p_folded": z_chain,
    }
    _json(args.out / "folding.json", summary)
    if args.results:
        Path(args.results).mkdir(parents=True, exist_ok=True)
        _json(Path(args.results) / "folding.json", summary)
    plot(summary, args.out / "fraction_folded.png")
    print(f"figure: {args.out / 'fraction_folded.png'}")
    return summary


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array(summary["temperatures_K"])
    ref = summary["reference"]
    rows = summary["generator"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(t, ref["p_folded"], 2 * np.array(ref["p_folded_err"]), fmt="o-", color="k", capsize=3, label="reference (GHMC tempering)")
    ax.errorbar(t - 1.5, [r["p_folded"] for r in rows], [2 * r["p_folded_err"] for r in rows], fmt="s", color="C0", capsize=3,
                label="generator, importance weights")
    if all("chain" in r for r in rows):
        ax.errorbar(t + 1.5, [r["chain"]["p_folded"] for r in rows], [2 * r["chain"]["p_folded_err"] for r in rows], fmt="^", color="C1",
                    capsize=3, label="GHMC + BG move")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("fraction folded (Q > 0.5)")
    ax.set_title("trpzip2 C-alpha Go model (2-sigma bars)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args())
