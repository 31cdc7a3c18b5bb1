"""Parallel-tempering reference runs for alanine dipeptide, as independent repeats.

The repeats grow together in rounds of ``--round`` iterations (each round resumes
every repeat), so that stopping early still leaves repeats of equal length.  A file
``STOP`` in the output folder ends the run after the current round.

Example (the ala2-vacuum reference in data/README.md)::

    nice -n 19 python scripts/run_ala2_tempering.py ala2-vacuum runs/issue5/ala2-vacuum-pt \
        --repeats 4 --iterations 12000 --round 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from openmm_bg.data import repartition_hydrogen_mass, run_parallel_tempering
from openmm_bg.systems import get_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["ala2-vacuum", "ala2-implicit"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=12000, help="per repeat")
    parser.add_argument("--round", type=int, default=1000)
    parser.add_argument("--t-min", type=float, default=300.0)
    parser.add_argument("--t-max", type=float, default=1000.0)
    parser.add_argument("--n-temperatures", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500, help="steps per iteration")
    parser.add_argument("--timestep", type=float, default=0.002, help="ps")
    parser.add_argument("--hydrogen-mass", type=float, default=4.0, help="Da")
    parser.add_argument("--platform", default=None)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    mol = get_system(args.system)
    system = repartition_hydrogen_mass(mol.system, mol.openmm_topology, args.hydrogen_mass)
    temperatures = np.geomspace(args.t_min, args.t_max, args.n_temperatures)
    platform = args.platform or mol.platform
    args.out.mkdir(parents=True, exist_ok=True)
    settings = dict(vars(args), out=str(args.out), temperatures=temperatures.tolist(), platform=platform)
    (args.out / "settings.json").write_text(json.dumps(settings, indent=1))
    log = open(args.out / "rounds.log", "a")
    for target in range(args.round, args.iterations + args.round, args.round):
        target = min(target, args.iterations)
        for r in range(args.repeats):
            t0 = time.time()
            run_parallel_tempering(
                system, mol.positions, temperatures, args.out / f"repeat{r}.nc", target,
                steps_per_iteration=args.steps, timestep=args.timestep, platform=platform,
                seed=args.seed + r, progress=False,
            )
            print(f"{time.strftime('%H:%M:%S')} repeat {r} reached {target} iterations ({time.time() - t0:.0f} s)", file=log, flush=True)
        if (args.out / "STOP").exists():
            print("STOP file found; ending after this round", file=log, flush=True)
            break


if __name__ == "__main__":
    main()
