"""Write an exact reference free energy from two independent exact methods, with provenance.

Inputs (both from the project's own scripts; see their docstrings):

* ``--bg-chain DIR``: ``scripts/run_bg_chain_reference.py`` chains (BG moves mixed with GHMC),
  read through its ``analysis.json`` (``--analyze``) and ``settings.json``;
* ``--tempering FILE``: a ``*-reference.json`` written by ``scripts/analyze_ala2_tempering.py``
  from ``scripts/run_ala2_tempering.py --integrator hmc`` or ``--integrator ghmc``
  (Metropolized dynamics in every replica);
* ``--bias-exchange FILE``: a ``*-bias-exchange-reference.json`` written by
  ``scripts/analyze_ala2_bias_exchange.py`` from ``scripts/run_ala2_bias_exchange.py``
  (replica exchange along a flattening bias on phi and psi, GHMC in every replica).

At least two methods are needed.
No sampler has an integrator bias, so each is exact up to statistics; the output
records each method's value, an error that is at least the standard error over its
independent repeats, their agreement (z between the two), and the combination
(``openmm_bg.reference.estimates.combine_exact_estimates``).  It refuses a tempering run
made with an unmetropolized integrator, and fewer than 4 repeats of either method.

    python scripts/write_exact_reference.py ala2-vacuum \\
        --bg-chain benchmarks/results/ala2-vacuum-bg-chain \\
        --bias-exchange runs/ala2-vacuum-bx/ala2-vacuum-bias-exchange-reference.json \\
        -o openmm_bg/data/ala2-vacuum-exact-reference.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

from openmm_bg.reference.estimates import combine_exact_estimates

#: published OPES multithermal references (ff96, 300 K) with HBond constraints, for comparison only
PUBLISHED = {"ala2-vacuum": 4.65, "ala2-implicit": 5.77}


def bg_chain_method(folder: Path) -> dict:
    analysis = json.loads((folder / "analysis.json").read_text())
    settings = json.loads((folder / "settings.json").read_text())
    repeats = analysis["repeats"]
    return {
        "delta_f_kT": analysis["delta_f_kT"],
        "error_kT": analysis["error_bootstrap_kT"],
        "repeat_estimates_kT": [r["delta_f"] for r in repeats],
        "sampler": "BoltzmannGeneratorMove (independence Metropolis-Hastings, full ratio) mixed with GHMC (SeededGHMCMove)",
        "cycles_per_repeat": min(r["cycles"] for r in repeats),
        "acceptance": {"ghmc": [r["ghmc_acceptance"] for r in repeats], "bg": [r["bg_acceptance"] for r in repeats]},
        "transitions_per_repeat": [r["transitions"] for r in repeats],
        "energy_evaluations": analysis["energy_evaluations"],
        "settings": settings,
        "source": str(folder),
        "command": f"python scripts/run_bg_chain_reference.py GENERATOR {folder} --repeats {settings['repeats']} --cycles {settings['cycles']} "
                   f"--round {settings['round']}; then the same with --analyze",
    }


#: the tempering dynamics that are exact, and how the record names them
EXACT_TEMPERING = {"ghmc": "GHMC", "hmc": "hybrid Monte Carlo (velocity Verlet, Metropolized trajectories)"}


def tempering_method(path: Path) -> dict:
    record = json.loads(path.read_text())
    simulation = record.get("simulation", {})
    integrator = simulation.get("integrator")
    if integrator not in EXACT_TEMPERING:
        raise ValueError(f"{path}: the tempering run used integrator {integrator!r}; an exact reference needs one of "
                         f"{sorted(EXACT_TEMPERING)}")
    return {
        "delta_f_kT": record["delta_f_kT"],
        "error_kT": record["error_kT"],
        "repeat_estimates_kT": record["repeat_estimates_kT"],
        "sampler": f"parallel tempering (openmmtools ReplicaExchangeSampler) with {EXACT_TEMPERING[integrator]} in every replica",
        "iterations_per_repeat": record["iterations_per_repeat"],
        "temperatures_K": record["temperatures_K"],
        "estimator": record["estimator"],
        "bootstrap_error_by_block_length": record["bootstrap_error_by_block_length"],
        "energy_evaluations": record["energy_evaluations"],
        "settings": simulation,
        "source": str(path),
        "command": f"python scripts/run_ala2_tempering.py SYSTEM OUT --integrator {integrator} ... (settings above); "
                   "then python scripts/analyze_ala2_tempering.py OUT PREFIX",
    }


def bias_exchange_method(path: Path) -> dict:
    record = json.loads(path.read_text())
    simulation = record.get("simulation", {})
    if simulation.get("integrator") != "ghmc":
        raise ValueError(f"{path}: the bias-exchange run used integrator {simulation.get('integrator')!r}; an exact reference needs 'ghmc'")
    return {
        "delta_f_kT": record["delta_f_kT"],
        "error_kT": record["error_kT"],
        "repeat_estimates_kT": record["repeat_estimates_kT"],
        "sampler": "Hamiltonian replica exchange (openmmtools ReplicaExchangeSampler) along a scaled flattening bias "
                   "on (phi, psi) at 300 K, GHMC in every replica",
        "iterations_per_repeat": record["iterations_per_repeat"],
        "scales": record["scales"],
        "estimator": record["estimator"],
        "bootstrap_error_by_block_length": record["bootstrap_error_by_block_length"],
        "energy_evaluations": record["energy_evaluations"],
        "settings": {k: v for k, v in simulation.items() if k != "bias_table_kjmol"},
        "source": str(path),
        "command": "python scripts/run_ala2_bias_exchange.py SYSTEM OUT ... (settings above; the bias table is in the "
                   "run's settings.json); then python scripts/analyze_ala2_bias_exchange.py OUT ... --prefix PREFIX",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=sorted(PUBLISHED))
    parser.add_argument("--bg-chain", type=Path, required=True)
    parser.add_argument("--tempering", type=Path)
    parser.add_argument("--bias-exchange", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    methods = {"bg_chain": bg_chain_method(args.bg_chain)}
    if args.tempering:
        tempering = tempering_method(args.tempering)
        methods[f"{tempering['settings']['integrator']}_tempering"] = tempering
    if args.bias_exchange:
        methods["ghmc_bias_exchange"] = bias_exchange_method(args.bias_exchange)
    if len(methods) < 2:
        parser.error("give --tempering or --bias-exchange (or both) besides --bg-chain: an exact reference needs two methods")
    combined = combine_exact_estimates(methods)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    record = {
        "system": args.system,
        "temperature_K": 300.0,
        "definition": "delta_f = F(phi > 0) - F(phi < 0) = -ln(p(phi>0) / p(phi<0)) at 300 K, kT",
        "exact": "every sampler is Metropolized (no integrator bias): exact up to the statistical error",
        "delta_f_kT": combined["delta_f_kT"],
        "error_kT": combined["error_kT"],
        "error_rule": "each method: max(its bootstrap error, standard error over its independent repeats); combined: "
                      "max(inverse-variance error, half the difference between the methods)",
        "methods_agree": combined["methods_agree"],
        "pairwise_z": combined["pairwise_z"],
        "methods": {name: {**methods[name], **combined["methods"][name]} for name in methods},
        "published_kT": PUBLISHED[args.system],
        "published_note": "OPES multithermal with HBond constraints; ours has no constraints, which changes the ensemble "
                          "(constrained bonds remove degrees of freedom and their coupling to phi), so a difference of "
                          "order 0.1 kT is expected and is not an error of either",
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "command": " ".join(["python", "scripts/write_exact_reference.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    for name, m in record["methods"].items():
        print(f"{name:20s} {m['delta_f_kT']:.3f} +- {m['error_kT']:.3f} kT ({m['n_repeats']} repeats)")
    for pair, z in combined["pairwise_z"].items():
        print(f"agreement {pair}: z = {z:+.2f}")
    print(f"{'all agree within 2 sigma' if combined['methods_agree'] else 'DISAGREE'}; "
          f"combined {record['delta_f_kT']:.3f} +- {record['error_kT']:.3f} kT -> {args.output}")
    return 0 if combined["methods_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
