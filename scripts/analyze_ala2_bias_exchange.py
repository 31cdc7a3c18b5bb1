"""Condense alanine-dipeptide bias-exchange repeats into samples and an exact reference free energy.

Reads ``repeat*.nc`` and ``settings.json`` written by scripts/run_ala2_bias_exchange.py, from
one or more folders run with the same bias, scales and dynamics (seeds must differ), and writes

* ``<prefix>-bias-exchange.npz``: per repeat, iteration and bias state (state order): phi and
  psi (radians, float32), the unbiased potential energy and the full bias energy (kJ/mol,
  float64), the bias scales and the temperature; with them
  :func:`openmm_bg.simulation.bias_exchange.bias_reduced_potentials` rebuilds the reduced potentials;
* ``<prefix>-bias-exchange-reference.json``: dF = F(phi > 0) - F(phi < 0) in the unbiased
  state by MBAR over all states and repeats, with block-bootstrap and repeat errors.

The two energies come from the sampler's stored matrix of reduced potentials
(:func:`~openmm_bg.simulation.bias_exchange.split_bias_energies`), which must be linear in
the bias scale to 1e-6 kT: a check that the settings describe the run.

    python scripts/analyze_ala2_bias_exchange.py runs/ala2-vacuum-bx-a runs/ala2-vacuum-bx-b \\
        --prefix runs/ala2-vacuum-bx/ala2-vacuum
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmm_bg.molecules.systems import get_system
from openmm_bg.reference.estimates import bootstrap_errors_by_block_length
from openmm_bg.simulation.bias_exchange import bias_reduced_potentials, split_bias_energies
from openmm_bg.simulation.tempering import energy_evaluations, read_parallel_tempering

#: largest allowed difference between stored and rebuilt reduced potentials, kT
REBUILD_TOLERANCE = 1e-6


#: settings that must agree between folders analysed together
SHARED_SETTINGS = ("system", "bias", "bias_table_kjmol", "scales", "temperature", "steps", "timestep", "hydrogen_mass", "platform")


def condense(folders: list[Path], system_name: str) -> dict:
    mol = get_system(system_name)
    all_settings = [json.loads((folder / "settings.json").read_text()) for folder in folders]
    settings = all_settings[0]
    for folder, other in zip(folders[1:], all_settings[1:]):
        for key in SHARED_SETTINGS:
            if other.get(key) != settings.get(key):
                raise ValueError(f"{folder} differs from {folders[0]} in {key!r}; analyse them separately")
    files = []
    for folder in folders:
        found = sorted((f for f in folder.glob("repeat*.nc") if not f.stem.endswith("_checkpoint")),
                       key=lambda p: int(p.stem.replace("repeat", "")))
        if not found:
            raise OSError(f"no repeat*.nc in {folder}")
        files += found
    seeds = [other["seed"] + r for other, folder in zip(all_settings, folders)
             for r in range(len(list(folder.glob("repeat*_checkpoint.nc"))))]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeats share seeds {seeds}: they are not independent")
    runs = [read_parallel_tempering(f) for f in files]
    n = min(min(r.n_iterations, len(r.positions)) for r in runs)
    scales, temperature = np.asarray(settings["scales"]), settings["temperature"]
    energy, bias, phi, psi, worst = [], [], [], [], 0.0
    for run, f in zip(runs, files):
        if run.bias_scales is None or not np.allclose(run.bias_scales, scales):
            raise ValueError(f"{f} was not run at the bias scales of settings.json ({scales.tolist()})")
        if not np.array_equal(run.checkpoint_iterations[:n], np.arange(n)):
            raise ValueError("repeats must store positions at every iteration")
        xyz = run.positions[:n].reshape(-1, mol.n_atoms, 3)
        state_of = run.replica_states[:n]
        U, V, misfit = split_bias_energies(run.reduced_potentials[:n], scales, temperature)  # per replica
        worst = max(worst, misfit)
        energy.append(_by_state(U, state_of))
        bias.append(_by_state(V, state_of))
        phi.append(_by_state(mol.collective_variables["phi"](xyz).reshape(n, -1), state_of))
        psi.append(_by_state(mol.collective_variables["psi"](xyz).reshape(n, -1), state_of))
    if worst > REBUILD_TOLERANCE:
        raise ValueError(f"the stored reduced potentials are not linear in the bias scales {scales.tolist()} "
                         f"(misfit {worst:.2e} kT > {REBUILD_TOLERANCE}): the settings do not describe this run")
    return dict(
        scales=scales, temperature=np.float64(temperature),
        potential_energy=np.stack(energy), bias_energy=np.stack(bias), phi=np.stack(phi).astype(np.float32), psi=np.stack(psi).astype(np.float32),
        steps_per_iteration=runs[0].steps_per_iteration, settings=all_settings, files=[str(f) for f in files],
        rebuild_max_difference_kT=worst,
    )


def _by_state(values: np.ndarray, replica_states: np.ndarray) -> np.ndarray:
    order = np.argsort(replica_states, axis=1)
    return np.take_along_axis(values, order, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--prefix", required=True, help="output prefix, e.g. runs/ala2-vacuum-bx/ala2-vacuum")
    parser.add_argument("--system", default="ala2-vacuum")
    parser.add_argument("--discard", type=int, default=200, help="equilibration iterations dropped from each repeat")
    parser.add_argument("--block-length", type=int, default=250, help="iterations")
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = condense(args.folders, args.system)
    settings, files, worst = data.pop("settings"), data.pop("files"), data.pop("rebuild_max_difference_kT")
    npz = Path(args.prefix + "-bias-exchange.npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz, **data)

    n_repeats, n_iter, n_states = data["phi"].shape
    if n_iter - args.discard < 4 * args.block_length:
        raise SystemExit(f"{n_iter} iterations per repeat: too few for --discard {args.discard} and 4 blocks of {args.block_length}")
    kept = slice(args.discard, None)
    u = [bias_reduced_potentials(data["potential_energy"][r, kept], data["bias_energy"][r, kept], data["scales"],
                                 data["temperature"])
         for r in range(n_repeats)]  # (iterations, sampled state, evaluated state)
    negative = [data["phi"][r, kept] < 0 for r in range(n_repeats)]
    positive = [data["phi"][r, kept] > 0 for r in range(n_repeats)]
    result, block_errors, block_warning = bootstrap_errors_by_block_length(
        u, negative, positive, args.block_length, args.n_bootstrap, args.seed, n_iter - args.discard)
    crossings = [[int(np.abs(np.diff((data["phi"][r, kept, k] > 0).astype(int))).sum()) for k in range(n_states)]
                 for r in range(n_repeats)]
    reference = {
        "system": args.system,
        "temperature_K": float(data["temperature"]),
        "definition": "delta_f = F(phi > 0) - F(phi < 0) = -ln(p(phi>0) / p(phi<0)) in the unbiased state, kT",
        "method": "Hamiltonian replica exchange along a scaled flattening bias on phi (openmm_bg.simulation.bias_exchange): "
                  "openmmtools ReplicaExchangeSampler, swap-all, GHMC in every replica (Metropolized: exact)",
        "delta_f_kT": result.delta_f,
        "error_kT": result.error,
        "bootstrap_error_kT": result.bootstrap_error,
        "bootstrap_error_by_block_length": block_errors,
        "warnings": [block_warning] if block_warning else [],
        "repeat_estimates_kT": result.repeat_estimates.tolist(),
        "repeat_standard_error_kT": result.repeat_error,
        "estimator": "MBAR over all bias states and repeats (pymbar 4); errors: block bootstrap within repeats, "
                     "and the standard error over independent repeats; error_kT is the larger",
        "block_length_iterations": args.block_length,
        "n_bootstrap": args.n_bootstrap,
        "bootstrap_seed": args.seed,
        "discarded_iterations_per_repeat": args.discard,
        "iterations_per_repeat": int(n_iter - 1),
        "n_repeats": int(n_repeats),
        "scales": data["scales"].tolist(),
        "phi_sign_changes_by_repeat_and_state": crossings,
        "unbiased_state_fraction_phi_positive_by_repeat": [float(np.mean(data["phi"][r, kept, 0] > 0)) for r in range(n_repeats)],
        "reduced_potential_misfit_kT": worst,
        "energy_evaluations": energy_evaluations(n_iter - 1, n_states, data["steps_per_iteration"]) * n_repeats,
        "energy_evaluations_note": "per repeat: iterations x replicas x (steps + 1 final energy + 1 swap-matrix row); "
                                   "the swap matrix evaluates every replica in every state, but only the bias changes "
                                   "between states, so a row costs one full evaluation; equilibration included",
        "simulation": {**settings[0], "seeds_by_folder": {s["out"]: s["seed"] for s in settings}},
        "files": files,
        "samples_file": npz.name,
    }
    out = Path(args.prefix + "-bias-exchange-reference.json")
    out.write_text(json.dumps(reference, indent=1) + "\n")
    for warning in reference["warnings"]:
        print(f"warning: {warning}")
    print(json.dumps({k: reference[k] for k in ("delta_f_kT", "error_kT", "bootstrap_error_by_block_length", "repeat_estimates_kT",
                                                 "repeat_standard_error_kT", "unbiased_state_fraction_phi_positive_by_repeat",
                                                 "iterations_per_repeat", "energy_evaluations")}, indent=1))
    print(f"phi sign changes per repeat, unbiased state: {[c[0] for c in crossings]}; top state: {[c[-1] for c in crossings]}")


if __name__ == "__main__":
    main()
