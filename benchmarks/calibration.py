"""Are the reported error bars honest?  z-scores of independent trainings against exact answers.

For each 2-D toy whose answer is exact (quadrature), it trains ``--runs`` small generators
with independent seeds by the toy recipe (``openmm_bg.recipes.toy``, ``ToyDemoSettings.reduced``
unless ``--full``), estimates dF between the toy's two states from each one's importance
weights with the package's own estimator (``openmm_bg.analysis.states.state_free_energy``:
bootstrap error and diagnostics), and prints for each run

    z = (estimate - exact) / reported error

then the fraction of runs with ``|z| <= 2`` (about 95 % for honest Gaussian errors), the
standard deviation of z (about 1), and how many runs the diagnostics flagged (a flagged
estimate says it cannot be trusted; its z is listed but it is also counted apart).

It does so for two estimators of the same generator: importance weights alone
(one-sided, ``state_free_energy``) and BAR between the generator and samples of each
state (two-sided, ``two_sided_state_free_energy``).  The samples of each state come
from Metropolis chains held in it (proposals leaving the state are rejected, so they
sample the Boltzmann distribution restricted to the state exactly; the toy analogue of
MD in each basin): 20 chains of 5000 burn-in and 10,000 kept steps, with steps of
``HELD_STEP`` (Mueller-Brown's state B holds two basins, and the training MC's step of
0.06 leaves each chain's share of them unconverged after thousands of steps: that made
the two-sided errors too small, z down to -6.7, in a first run).  The generator's
samples for it are topped up until each state holds at least as many as its own
independent samples, of which a random 10,000 at most are kept (``independent_held_samples``,
``balanced_generator_samples``): with the recipe's 20,000 alone,
Mueller-Brown's rare state held a few hundred, BAR leaned on the held samples' heavy-tailed
ratios, and the two-sided estimates came out low (|z| <= 2 in 80 %, z down to -4.2).

``--ala2 WORKDIR`` adds the alanine dipeptide trainings that ``benchmarks.ess_budget`` left in
WORKDIR, against ``--ala2-reference FILE`` (an exact reference written by
``scripts/write_exact_reference.py``, or the BG-chain analysis
``benchmarks/results/ala2-vacuum-bg-chain/analysis.json``, whose error is then the larger of
its bootstrap and its repeats' Student-t standard error), or else against the bundled
reference each record names (not exact).  The reference's error is added in quadrature.

Runs are resumable: each writes ``WORKDIR/SYSTEM/seed-N.json`` (default WORKDIR
benchmarks/results/calibration, committed as runs finish, so that a later session goes on)
and is read back if present.
Run from the repository root::

    nice -n 19 python -m benchmarks.calibration                          # 2 toys x 20 runs, about 1 h on an idle 2-core machine
    python -m benchmarks.calibration --runs 3 --systems double-well      # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from openmm_bg.analysis.states import two_sided_state_free_energy
from openmm_bg.recipes.toy import TOY_SYSTEMS, ToyDemoSettings, run_toy_demo

__all__ = ["toy_run", "summarize", "main"]


def toy_run(system: str, seed: int, full: bool, folder: Path) -> dict:
    """One training of the toy recipe and its estimate; read back from ``folder`` if done before."""
    from openmm_bg.analysis.states import state_free_energy

    path = folder / system / f"seed-{seed}.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    if old is not None and old.get("two_sided", {}).get("sampler") == held_sampler(system):
        return old
    base = ToyDemoSettings(system=system) if full else ToyDemoSettings.reduced(system)
    settings = ToyDemoSettings(**{**base.__dict__, "seed": seed})
    report = run_toy_demo(settings, progress=False)
    toy = TOY_SYSTEMS[system]
    x, y, log_w = report.samples[:, 0], report.samples[:, 1], report.samples[:, 2]
    (_, in_a), (_, in_b) = toy.states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = state_free_energy(log_w, in_a(x, y), in_b(x, y), n_bootstrap=200, seed=seed, warn=False)
    held, own_evaluations = held_state_log_weights(system, report.generator, seed)
    own = independent_held_samples(held, seed)
    x2, y2, log_w2 = balanced_generator_samples(report.generator, toy, own, (x, y, log_w), seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two = two_sided_state_free_energy(log_w2, in_a(x2, y2), in_b(x2, y2), *own, decorrelate=False, n_bootstrap=200, seed=seed, warn=False)
    record = {"system": system, "seed": seed, "estimate": result["delta_f_kT"], "error": result["error_kT"], "exact": report.delta_f_exact,
              "k_hat": result["k_hat"], "warnings": list(result["warnings"]), "ess": report.ess, "evaluations": report.energy_evaluations,
              "two_sided": {"estimate": two["delta_f_kT"], "error": two["error_kT"], "warnings": list(two["warnings"]),
                            "samples_a": two["samples_a"], "samples_b": two["samples_b"], "generator_samples": int(log_w2.size),
                            "generator_a": two["n_a"], "generator_b": two["n_b"], "evaluations": own_evaluations + int(log_w2.size - log_w.size),
                            "sampler": held_sampler(system), **{k: two[k] for k in two if k.startswith("k_hat_")}}}
    if old is not None:
        # a record written before the two-sided estimate: the retraining must reproduce its one-sided figures
        record["reproduces_earlier_record"] = bool(abs(old["estimate"] - record["estimate"]) < 1e-9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


#: step of the Metropolis chains held in each state (acceptance about 0.3 on Mueller-Brown's state B)
HELD_STEP = {"double-well": 0.3, "mueller-brown": 0.2}
HELD_CHAINS, HELD_BURN_IN, HELD_STEPS = 20, 5000, 10_000


#: generator samples drawn per batch for the two-sided estimate, and at most in all
BALANCE_BATCH, BALANCE_MAX = 100_000, 2_000_000
#: independent held samples kept per state at most (a random subset): BAR's cost grows with the
#: generator samples that must balance them
OWN_MAX = 10_000


def held_sampler(system: str) -> dict:
    """The settings of the two-sided estimate, recorded with each run (a change reruns it)."""
    return {"step": HELD_STEP[system], "chains": HELD_CHAINS, "burn_in": HELD_BURN_IN, "steps": HELD_STEPS, "leg_k_hat": True,
            "balanced": {"batch": BALANCE_BATCH, "max": BALANCE_MAX}, "own_max": OWN_MAX}


def independent_held_samples(held, seed: int, n_max: int = OWN_MAX) -> list[np.ndarray]:
    """Each state's held chains thinned to independent samples (``decorrelated``), pooled, and
    cut to a random ``n_max`` of them; one 1-D array of log weights per state."""
    from openmm_bg.analysis.states import decorrelated

    rng = np.random.default_rng(30_000 + seed)
    out = []
    for state in held:
        pooled = np.concatenate([decorrelated(np.asarray(series, dtype=np.float64))[0] for series in state])
        out.append(pooled if pooled.size <= n_max else pooled[np.sort(rng.choice(pooled.size, n_max, replace=False))])
    return out


def balanced_generator_samples(generator, toy, own, first, seed: int):
    """The generator's samples for the two-sided estimate: ``first`` topped up until every state holds
    at least as many generator samples as ``own`` has samples of it (or ``BALANCE_MAX`` in all).

    With fewer, BAR leans on the state's own samples, whose density ratios are heavy-tailed on
    Mueller-Brown, and its estimate comes out low by several bootstrap errors (seeds 100, 111 and
    113 of the first two-sided run, with the 20,000 samples of the toy recipe alone).
    Returns ``x, y, log_w``.
    """
    import torch

    needed = [len(state) for state in own]
    x, y, log_w = (np.asarray(a) for a in first)
    rng = torch.Generator().manual_seed(20_000 + seed)
    indicators = [indicator for _, indicator in toy.states]
    while log_w.size < BALANCE_MAX and any(int(f(x, y).sum()) < n for f, n in zip(indicators, needed)):
        batch = generator.sample(min(BALANCE_BATCH, BALANCE_MAX - log_w.size), generator=rng).numpy()
        x = np.concatenate([x, batch["x"][:, 0]])
        y = np.concatenate([y, batch["x"][:, 1]])
        log_w = np.concatenate([log_w, batch["log_weight"]])
    return x, y, log_w


def held_state_log_weights(system: str, generator, seed: int, n_chains: int = HELD_CHAINS, burn_in: int = HELD_BURN_IN, n_steps: int = HELD_STEPS):
    """Log weights ``-u - log p_X`` of Metropolis chains held in each state of a toy, one series per chain.

    Proposals that leave the state are rejected, so each chain samples the Boltzmann
    distribution restricted to the state exactly.  Returns ([series of A], [series of B])
    and the number of energy evaluations spent.
    """
    import torch

    toy = TOY_SYSTEMS[system]
    rng = torch.Generator().manual_seed(10_000 + seed)
    out = []
    for (_, indicator), start in zip(toy.states, toy.state_starts):
        x = torch.tensor(start, dtype=torch.float64).expand(n_chains, 2).clone()
        u = toy.energy(x)
        kept = []
        for step in range(burn_in + n_steps):
            proposal = x + HELD_STEP[system] * torch.randn(x.shape, generator=rng, dtype=torch.float64)
            inside = torch.as_tensor(indicator(proposal[:, 0].numpy(), proposal[:, 1].numpy()))
            u_new = torch.where(inside, toy.energy(proposal), torch.full_like(u, math.inf))
            accept = torch.rand(n_chains, generator=rng, dtype=torch.float64).log() < u - u_new
            x, u = torch.where(accept[:, None], proposal, x), torch.where(accept, u_new, u)
            if step >= burn_in:
                kept.append(x.clone())
        frames = torch.stack(kept, dim=1).reshape(-1, 2)  # chain-major
        with torch.no_grad():
            log_w = (-toy.energy(frames) - generator.log_prob(frames.to(next(generator.parameters()).dtype))).numpy().astype(np.float64)
        out.append(list(log_w.reshape(n_chains, n_steps)))
    return tuple(out), 2 * n_chains * (1 + burn_in + n_steps)


def load_ala2_reference(path: Path) -> dict:
    """``delta_f_kT``, ``error_kT`` and a name from an exact reference or a BG-chain ``analysis.json``."""
    from openmm_bg.analysis import repeat_standard_error

    record = json.loads(Path(path).read_text())
    if "error_kT" in record:
        return {"delta_f_kT": float(record["delta_f_kT"]), "error_kT": float(record["error_kT"]), "name": Path(path).name}
    if "error_bootstrap_kT" in record and "repeats" in record:
        repeats = [r["delta_f"] for r in record["repeats"]]
        error = max(float(record["error_bootstrap_kT"]), repeat_standard_error(repeats))
        return {"delta_f_kT": float(record["delta_f_kT"]), "error_kT": error, "name": f"the BG-chain reference ({path})"}
    raise ValueError(f"{path} holds neither an exact reference (delta_f_kT, error_kT) nor a BG-chain analysis")


def summarize(label: str, records: list[dict], truth_error: float = 0.0) -> dict:
    """Print one line per run and the calibration figures; returns them."""
    z = []
    for r in records:
        sigma = math.hypot(r["error"], truth_error)
        z.append((r["estimate"] - r["exact"]) / sigma if sigma > 0 else math.inf)
        flag = "  FLAGGED: " + "; ".join(w.split(":")[0] for w in r["warnings"]) if r["warnings"] else ""
        print(f"  seed {r['seed']:<4d} dF {r['estimate']:8.3f} +- {r['error']:.3f} kT   exact {r['exact']:.3f}   z {z[-1]:+6.2f}   "
              f"ESS {100 * r.get('ess', float('nan')):5.1f} %   k-hat {r['k_hat'] if r['k_hat'] is None else round(r['k_hat'], 2)}{flag}")
    z = np.asarray(z)
    finite = np.isfinite(z)
    flagged = np.array([bool(r["warnings"]) for r in records])
    inside = float(np.mean(np.abs(z) <= 2))
    sd = float(np.std(z[finite], ddof=1)) if finite.sum() > 1 else math.nan
    trusted = ~flagged & finite
    inside_trusted = float(np.mean(np.abs(z[trusted]) <= 2)) if trusted.any() else math.nan
    print(f"{label}: {len(z)} runs, |z| <= 2 in {100 * inside:.0f} % (target >= 90 %), sd(z) {sd:.2f} (target <= 1.5); "
          f"{int(flagged.sum())} flagged by the diagnostics; among the others |z| <= 2 in {100 * inside_trusted:.0f} %")
    return {"runs": len(z), "inside_2": inside, "sd_z": sd, "flagged": int(flagged.sum()), "inside_2_unflagged": inside_trusted}


def main(args: argparse.Namespace) -> dict:
    out = {}
    for system in args.systems:
        print(f"{system}: {args.runs} trainings ({'full' if args.full else 'reduced'} toy recipe)", flush=True)
        records = [toy_run(system, args.first_seed + k, args.full, args.workdir) for k in range(args.runs)]
        print(f"{system}, one-sided (importance weights alone):")
        out[system] = summarize(system, records)
        two = [{"seed": r["seed"], "exact": r["exact"], "k_hat": None, "ess": r.get("ess", math.nan), **r["two_sided"]} for r in records if "two_sided" in r]
        if two:
            extra = np.mean([r["evaluations"] for r in two])
            print(f"{system}, two-sided (BAR with samples held in each state; {extra:.3g} more energy evaluations per run on average, "
                  "for the held chains and the generator samples that balance them):")
            out[f"{system} two-sided"] = summarize(f"{system} two-sided", two)
        changed = [r["seed"] for r in records if r.get("reproduces_earlier_record") is False]
        if changed:
            print(f"  note: the retrainings of seeds {changed} did not reproduce their earlier one-sided records bit for bit")
    if args.ala2 is not None:
        truth = load_ala2_reference(args.ala2_reference) if args.ala2_reference is not None else None
        records = []
        for path in sorted(Path(args.ala2).glob("*/seed-*/ess_budget.json")):
            r = json.loads(path.read_text())
            if r.get("delta_f") is None or (truth is None and r.get("reference") is None):
                continue
            reference = truth or {"delta_f_kT": r["reference"]["delta_f_kT"], "error_kT": r["reference"]["error_kT"],
                                  "name": Path(r["reference"].get("file", "bundled reference")).name}
            records.append({"seed": r["seed"], "estimate": r["delta_f"], "error": r["delta_f_error"], "exact": reference["delta_f_kT"],
                            "k_hat": r.get("k_hat"), "warnings": r.get("warnings", []), "ess": r["kish_ess"],
                            "truth_error": reference["error_kT"], "reference_name": reference["name"]})
        if records:
            print(f"ala2-vacuum: {len(records)} trainings from {args.ala2}, against {records[0]['reference_name']} "
                  f"({records[0]['exact']:.3f} +- {records[0]['truth_error']:.3f} kT, its error added in quadrature)")
            out["ala2-vacuum"] = summarize("ala2-vacuum", records, truth_error=records[0]["truth_error"])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="*", default=["double-well", "mueller-brown"], choices=sorted(TOY_SYSTEMS),
                        help="toys to calibrate on (give none, \"--systems\" alone, to score only --ala2)")
    parser.add_argument("--runs", type=int, default=20, help="independent trainings per toy (default 20)")
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--full", action="store_true", help="the toy demo's full budget instead of the reduced one")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/results/calibration"), help="records of finished runs, reused; small JSON files meant to be committed (default benchmarks/results/calibration)")
    parser.add_argument("--ala2", type=Path, default=None, help="a benchmarks.ess_budget workdir whose trainings to add")
    parser.add_argument("--ala2-reference", type=Path, default=None,
                        help="exact reference JSON, or a BG-chain analysis.json, for the ala2 trainings (default: the bundled reference)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be positive, got {args.runs}")
    return args


if __name__ == "__main__":
    main(parse_args())
    sys.exit(0)
