"""Condense alanine-dipeptide parallel-tempering repeats into bundled data and a reference free energy.

Reads ``repeat*.nc`` written by scripts/run_ala2_tempering.py, or the committed segments
``repeat<r>/segment<k>.npz`` of its ``--results`` folder, and writes

* ``<name>-pt.npz``: per repeat, iteration and temperature (state order): phi and psi
  (radians, float32) and the potential energy (kJ/mol, float64) of the configuration;
* ``<name>-reference.json``: dF = F(phi > 0) - F(phi < 0) at the lowest temperature by
  MBAR over all temperatures and repeats, with block-bootstrap and repeat errors,
  direct-count populations of the 300 K replica, and the cost in energy evaluations.

    python scripts/analyze_ala2_tempering.py runs/issue5/ala2-vacuum-pt data/ala2-vacuum
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmm_bg.simulation.tempering import TemperingData, energy_evaluations, read_parallel_tempering
from openmm_bg.units import MOLAR_GAS_CONSTANT
from openmm_bg.reference.estimates import bootstrap_errors_by_block_length
from openmm_bg.molecules.systems import get_system


def condense_segments(folder: Path) -> dict:
    """The same arrays from the committed segments of every ``repeat<r>`` in ``folder``."""
    from openmm_bg.simulation.segments import read_segments

    indices = sorted(int(d.name[len("repeat"):]) for d in folder.glob("repeat*") if d.is_dir() and (d / "segment0.npz").is_file())
    runs = [read_segments(folder, r) for r in indices]
    n = min(len(run.potential_energy) for run in runs)
    for run in runs:
        if not np.allclose(run.temperatures, runs[0].temperatures) or run.steps_per_iteration != runs[0].steps_per_iteration:
            raise ValueError("repeats must share temperatures and steps per iteration")
    n_states = len(runs[0].temperatures)
    return dict(
        temperatures=runs[0].temperatures,
        potential_energy=np.stack([run.potential_energy[:n] for run in runs]).astype(np.float32),
        phi=np.stack([run.collective_variables["phi"][:n] for run in runs]).astype(np.float32),
        psi=np.stack([run.collective_variables["psi"][:n] for run in runs]).astype(np.float32),
        **{name: np.stack([run.collective_variables[name][:n] for run in runs]).astype(np.float32)
           for name in ("omega1", "omega2") if all(name in run.collective_variables for run in runs)},
        steps_per_iteration=runs[0].steps_per_iteration,
        settings=json.loads((folder / "settings.json").read_text()),
        files=[f"repeat{r}/segment{k}.npz" for r, run in zip(indices, runs) for k in range(len(run.seeds))],
        # each repeat's cost over the rows kept (equal per-iteration cost within a repeat)
        energy_evaluations=int(sum(n_states + run.force_evaluations * (n - 1) / max(run.iterations, 1) for run in runs)),
    )


def condense(folder: Path, system_name: str) -> dict:
    if any(folder.glob("repeat*/segment0.npz")):
        return condense_segments(folder)
    mol = get_system(system_name)
    files = [f for f in folder.glob("repeat*.nc") if not f.stem.endswith("_checkpoint")]
    files.sort(key=lambda p: int(p.stem.replace("repeat", "")))
    if not files:
        raise OSError(f"no repeat*.nc in {folder}")
    runs = [read_parallel_tempering(f) for f in files]
    # Repeats grow in rounds; use the length they all reached.
    n = min(min(r.n_iterations, len(r.positions)) for r in runs)
    runs = [
        TemperingData(r.temperatures, r.replica_states[:n], r.reduced_potentials[:n], r.positions[:n],
                      r.checkpoint_iterations[:n], r.steps_per_iteration)
        for r in runs
    ]
    temperatures = runs[0].temperatures
    energy, phi, psi = [], [], []
    for run in runs:
        if not np.allclose(run.temperatures, temperatures) or not np.array_equal(run.checkpoint_iterations, np.arange(n)):
            raise ValueError("repeats must share temperatures and store positions at every iteration")
        energy.append(run.potential_energies())
        xyz = run.positions.reshape(-1, mol.n_atoms, 3)
        phi.append(run.by_state(mol.collective_variables["phi"](xyz).reshape(n, -1)))
        psi.append(run.by_state(mol.collective_variables["psi"](xyz).reshape(n, -1)))
    settings = json.loads((folder / "settings.json").read_text())
    return dict(
        temperatures=temperatures,
        potential_energy=np.stack(energy).astype(np.float32),  # ~1e-5 kJ/mol precision: plenty for MBAR
        phi=np.stack(phi).astype(np.float32),
        psi=np.stack(psi).astype(np.float32),
        steps_per_iteration=runs[0].steps_per_iteration,
        settings=settings,
        files=[f.name for f in files],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("prefix", help="output prefix, e.g. data/ala2-vacuum")
    parser.add_argument("--system", default="ala2-vacuum")
    parser.add_argument("--discard", type=int, default=500, help="equilibration iterations dropped from each repeat")
    parser.add_argument("--block-length", type=int, default=500, help="iterations")
    parser.add_argument("--thin", type=int, default=1, help="use every THIN-th iteration (MBAR cost grows with samples)")
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--isomers", choices=["trans", "all"], default="trans",
                        help="trans (default, where the data hold the peptide torsions omega1/omega2): both states "
                             "require both peptide bonds trans, |omega| > 90 deg, as MD at 300 K and the BG chain sample; "
                             "all: cis configurations count too")
    args = parser.parse_args()

    data = condense(args.folder, args.system)
    settings = data.pop("settings")
    files = data.pop("files")
    evaluations = data.pop("energy_evaluations", None)
    npz = Path(args.prefix + "-pt.npz")
    np.savez_compressed(npz, **{k: v for k, v in data.items()})

    energy, phi, temperatures = data["potential_energy"], data["phi"], data["temperatures"]
    n_repeats, n_iter, n_states = energy.shape
    kept = slice(args.discard, None, args.thin)
    u = [energy[r, kept, :, None] / (MOLAR_GAS_CONSTANT * temperatures)[None, None, :] for r in range(n_repeats)]
    has_omega = "omega1" in data and "omega2" in data
    if args.isomers == "trans" and not has_omega:
        print("warning: these data hold no peptide torsions; cis configurations, if any, count in the states")
    is_trans = (np.abs(data["omega1"]) > np.pi / 2) & (np.abs(data["omega2"]) > np.pi / 2) if has_omega else None
    trans = is_trans if args.isomers == "trans" and has_omega else np.ones_like(phi, dtype=bool)
    negative = [(phi[r, kept] < 0) & trans[r, kept] for r in range(n_repeats)]
    positive = [(phi[r, kept] > 0) & trans[r, kept] for r in range(n_repeats)]
    # the bootstrap error should level off with the block length; checked at half and twice it
    result, block_errors, block_warning = bootstrap_errors_by_block_length(
        u, negative, positive, args.block_length, args.n_bootstrap, args.seed, n_iter - args.discard, thin=args.thin)
    direct = [float(np.mean(phi[r, args.discard :, 0] > 0)) for r in range(n_repeats)]
    reference = {
        "system": args.system,
        "temperature_K": float(temperatures[0]),
        "definition": "delta_f = F(phi > 0) - F(phi < 0) = -ln(p(phi>0) / p(phi<0)) at the lowest temperature, kT"
        + (", both peptide bonds trans (|omega1|, |omega2| > 90 deg) in both states" if has_omega and args.isomers == "trans" else ""),
        "isomers": args.isomers if has_omega else "all (no peptide torsions stored)",
        "cis_fraction_by_temperature": None if not has_omega else
        [float(np.mean(~is_trans[:, args.discard :, k])) for k in range(n_states)],
        "delta_f_kT": result.delta_f,
        "error_kT": result.error,
        "bootstrap_error_kT": result.bootstrap_error,
        "bootstrap_error_by_block_length": block_errors,
        "warnings": [block_warning] if block_warning else [],
        "repeat_estimates_kT": result.repeat_estimates.tolist(),
        "repeat_standard_error_kT": result.repeat_error,
        "estimator": "MBAR over all temperatures and repeats (pymbar 4); errors: block bootstrap within repeats, "
        "and the standard error over independent repeats; error_kT is the larger",
        "block_length_iterations": args.block_length,
        "n_bootstrap": args.n_bootstrap,
        "n_bootstrap_other_block_lengths": args.n_bootstrap // 2,
        "bootstrap_seed": args.seed,
        "discarded_iterations_per_repeat": args.discard,
        "thin": args.thin,
        "thin_note": "the estimate uses iterations discard, discard + thin, ... of each repeat",
        "iterations_per_repeat": int(n_iter - 1),
        "n_repeats": int(n_repeats),
        "temperatures_K": temperatures.tolist(),
        "direct_300K_fraction_phi_positive_by_repeat": direct,
        "energy_evaluations": evaluations if evaluations is not None
        else energy_evaluations(n_iter - 1, n_states, data["steps_per_iteration"]) * n_repeats,
        "energy_evaluations_note": "per repeat: iterations x replicas x (steps + 1 final-state energy + 1 swap-matrix "
        "energy) + initial matrix; summed over repeats, equilibration included",
        "simulation": settings,
        "pt_files": files,
        "samples_file": npz.name,
    }
    out = Path(args.prefix + "-reference.json")
    out.write_text(json.dumps(reference, indent=1) + "\n")
    for warning in reference["warnings"]:
        print(f"warning: {warning}")
    print(json.dumps({k: reference[k] for k in ("delta_f_kT", "error_kT", "bootstrap_error_by_block_length",
                                                 "repeat_estimates_kT", "repeat_standard_error_kT",
                                                 "direct_300K_fraction_phi_positive_by_repeat", "energy_evaluations")}, indent=1))


if __name__ == "__main__":
    main()
