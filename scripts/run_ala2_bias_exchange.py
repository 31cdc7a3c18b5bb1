"""Exact reference runs for alanine dipeptide: replica exchange along a flattening bias on (phi, psi), with GHMC.

Every replica is at 300 K and feels ``s * V(phi, psi)``, ``V`` = minus an estimate of the
(phi, psi) free-energy surface, ``s`` from 0 (unbiased) to 1
(:mod:`openmm_bg.simulation.bias_exchange`).  Replicas run Metropolized dynamics (GHMC),
and swaps are Metropolis moves, so the run is exact up to statistics; the surface only
sets how fast it mixes.  The surface comes from the bundled parallel-tempering samples
(``ala2-vacuum-pt.npz``, Langevin replicas, so not exact, and need not be), reweighted to
300 K by MBAR over its temperatures, histogrammed on 36 x 36 cells, smoothed by one cell
and capped at 14 kT.  A bias on phi alone mixes slowly: phi's barriers are crossed only in
narrow psi channels (in a 1000-iteration trial with a phi bias, not kept, the top state
put about ten times fewer samples in 0 < phi < 90 deg than a flat profile would).

The repeats grow together in rounds of ``--round`` iterations (each round resumes every
repeat), so stopping early still leaves repeats of equal length; rerunning the same
command resumes.  A file ``STOP`` in the output folder ends the run after the current
round.  Analyse with ``scripts/analyze_ala2_bias_exchange.py``.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/run_ala2_bias_exchange.py ala2-vacuum runs/ala2-vacuum-bx \\
        --repeats 4 --iterations 20000 --round 500 --seed 7000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmm_bg.molecules.collective_variables import backbone_dihedral_indices
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference.bundled import bundled_path
from openmm_bg.reference.bundled import load_tempering_samples
from openmm_bg.simulation.bias_exchange import (
    dihedral_pair_flattening_force,
    run_bias_exchange,
    torsion_flattening_force,
    weighted_dihedral_surface,
)
from openmm_bg.units import kt_kjmol


def tempering_surface(n_bins: int, thin: int = 10, discard: int = 500) -> np.ndarray:
    """F(phi, psi) at the lowest temperature of the bundled tempering samples, kT (MBAR over temperatures)."""
    from pymbar import MBAR

    data = load_tempering_samples("ala2-vacuum")
    energy = data["potential_energy"][:, discard::thin].astype(np.float64)  # (repeats, iterations, states)
    n_states = energy.shape[2]
    by_state = lambda a: np.moveaxis(a, 2, 0).reshape(n_states, -1)  # noqa: E731
    beta = 1.0 / np.array([kt_kjmol(t) for t in data["temperatures"]])
    u_kn = beta[:, None] * by_state(energy).reshape(-1)[None, :]
    mbar = MBAR(u_kn, np.full(n_states, energy.shape[0] * energy.shape[1]), verbose=False)
    weights = mbar.weights()[:, 0]
    phi = by_state(data["phi"][:, discard::thin]).reshape(-1)
    psi = by_state(data["psi"][:, discard::thin]).reshape(-1)
    return weighted_dihedral_surface(phi, psi, weights, n_bins=n_bins)
from openmm_bg.simulation.langevin import repartition_hydrogen_mass
from openmm_bg.simulation.rounds import grow_in_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["ala2-vacuum", "ala2-implicit"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--bias", choices=["phi-psi", "phi"], default="phi-psi",
                        help="phi-psi: the surface from the bundled tempering samples; phi: the bundled umbrella phi profile")
    parser.add_argument("--cap", type=float, default=14.0, help="kT; the surface is flattened up to this height")
    parser.add_argument("--n-bins", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20000, help="per repeat")
    parser.add_argument("--round", type=int, default=500)
    parser.add_argument("--n-states", type=int, default=8, help="bias scales, evenly spaced from 0 to 1")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the profile flattened at scale 1")
    parser.add_argument("--n-terms", type=int, default=8, help="Fourier harmonics of a phi bias")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--steps", type=int, default=250, help="GHMC steps per iteration")
    parser.add_argument("--timestep", type=float, default=0.002, help="ps")
    parser.add_argument("--hydrogen-mass", type=float, default=4.0,
                        help="Da (masses do not change the configurational ensemble; GHMC keeps it exact)")
    parser.add_argument("--platform", default="Reference")
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()

    mol = get_system(args.system)
    phi_atoms = [int(i) for i in backbone_dihedral_indices(mol.topology, "phi")[0]]
    psi_atoms = [int(i) for i in backbone_dihedral_indices(mol.topology, "psi")[0]]
    if args.bias == "phi":
        profile = json.loads(bundled_path("ala2-vacuum-umbrella-reference.json").read_text())["profile"]
        bias, table = torsion_flattening_force(
            phi_atoms, np.asarray(profile["phi_rad"]), np.asarray(profile["F_kT"]), args.temperature,
            n_terms=args.n_terms, fraction=args.fraction,
        )
        source = "ala2-vacuum-umbrella-reference.json (profile); Fourier coefficients [c0, a1, b1, ...] in kJ/mol"
    else:
        bias, table = dihedral_pair_flattening_force(
            phi_atoms, psi_atoms, tempering_surface(args.n_bins), args.temperature, fraction=args.fraction, cap_kT=args.cap,
        )
        source = ("ala2-vacuum-pt.npz reweighted to its lowest temperature by MBAR (every 10th iteration after 500), "
                  "36 x 36 histogram smoothed by one cell; V[i, j] in kJ/mol at phi, psi = -pi + (i, j + 1/2) 2 pi / n")
    scales = np.linspace(0.0, 1.0, args.n_states)
    system = repartition_hydrogen_mass(mol.system, mol.openmm_topology, args.hydrogen_mass) if args.hydrogen_mass else mol.system
    args.out.mkdir(parents=True, exist_ok=True)
    settings = dict(
        vars(args), out=str(args.out), integrator="ghmc", collision_rate=10.0, scales=scales.tolist(),
        phi_atoms=phi_atoms, psi_atoms=psi_atoms, bias_table_kjmol=np.asarray(table).round(6).tolist(), bias_source=source,
        bias_note="state k feels scales[k] * V; the bias energy of every sample is recovered from the stored "
                  "reduced potentials (openmm_bg.simulation.bias_exchange.split_bias_energies)",
    )
    settings_file = args.out / "settings.json"
    if settings_file.exists():
        old = json.loads(settings_file.read_text())
        for key in ("bias_table_kjmol", "scales", "temperature", "steps", "timestep", "hydrogen_mass", "seed"):
            if not np.allclose(np.asarray(old[key], dtype=float), np.asarray(settings[key], dtype=float)):
                raise SystemExit(f"{args.out} was started with {key} = {old[key]}, not {settings[key]}; use another folder")
    settings_file.write_text(json.dumps(settings, indent=1))
    grow_in_rounds(args.out, range(args.repeats), args.iterations, args.round, lambda r, target: run_bias_exchange(
        system, mol.positions, bias, scales, args.temperature, args.out / f"repeat{r}.nc", target,
        steps_per_iteration=args.steps, timestep=args.timestep, platform=args.platform,
        seed=args.seed + r, progress=False, integrator="ghmc",
    ))

if __name__ == "__main__":
    main()
