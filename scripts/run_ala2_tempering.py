"""Parallel-tempering reference runs for alanine dipeptide, as independent repeats.

The repeats grow together in rounds of ``--round`` iterations (each round resumes
every repeat), so that stopping early still leaves repeats of equal length.  A file
``STOP`` in the output folder ends the run after the current round.

The defaults are the recipe of the bundled ala2-vacuum reference (data/README.md): 1 fs
steps, true hydrogen masses, friction 10/ps.  Two earlier references are kept for the record:

* ``--timestep 0.002 --hydrogen-mass 4 --friction 1`` came out 0.36 kT below
  ``--friction 1`` at 1 fs with true masses (integrator error, carried down to 300 K by
  the exchanges);
* ``--friction 1``: every replica redraws its velocities at each iteration, and at 1/ps
  that heats it: the 300 K replica's mean potential energy in phi < 0 was 0.25 kT above
  plain MD (``benchmarks/langevin_velocity_refresh.py``).

``--integrator ghmc`` runs Metropolized dynamics in every replica (``SeededGHMCMove``,
velocities redrawn each iteration): no integrator bias at any time step, for an exact
reference (issue 16).

Example (the ala2-vacuum reference; its four repeats were run as four processes, two at a
time, with ``--repeats 1 --seed 5000+r`` in separate folders, which gives the same repeats)::

    nice -n 5 python scripts/run_ala2_tempering.py ala2-vacuum runs/ala2-vacuum-pt-g10 \
        --repeats 4 --iterations 33000 --round 1000 --seed 5000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmm_bg.simulation.langevin import repartition_hydrogen_mass
from openmm_bg.simulation.rounds import grow_in_rounds
from openmm_bg.simulation.tempering import run_parallel_tempering
from openmm_bg.molecules.systems import get_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["ala2-vacuum", "ala2-implicit"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--first-repeat", type=int, default=0,
                        help="index of the first repeat (seed + index): two processes can grow repeats 0-1 and 2-3 of one folder")
    parser.add_argument("--iterations", type=int, default=12000, help="per repeat")
    parser.add_argument("--round", type=int, default=1000)
    parser.add_argument("--t-min", type=float, default=300.0)
    parser.add_argument("--t-max", type=float, default=1000.0)
    parser.add_argument("--n-temperatures", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500, help="steps per iteration")
    parser.add_argument("--timestep", type=float, default=0.001, help="ps")
    parser.add_argument("--hydrogen-mass", type=float, default=None,
                        help="Da; repartition hydrogen masses (default: true masses; see the caution above)")
    parser.add_argument("--friction", type=float, default=10.0,
                        help="1/ps (default 10: with velocities redrawn every iteration, 1/ps heats the 300 K replica; see above)")
    parser.add_argument("--integrator", choices=["langevin", "ghmc"], default="langevin",
                        help="replica dynamics: langevin (the bundled references) or ghmc (Metropolized, exact; about 4x slower per step)")
    parser.add_argument("--platform", default=None)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    mol = get_system(args.system)
    system = mol.system if args.hydrogen_mass is None else repartition_hydrogen_mass(mol.system, mol.openmm_topology, args.hydrogen_mass)
    temperatures = np.geomspace(args.t_min, args.t_max, args.n_temperatures)
    platform = args.platform or mol.platform
    args.out.mkdir(parents=True, exist_ok=True)
    settings = dict(vars(args), out=str(args.out), temperatures=temperatures.tolist(), platform=platform)
    name = "settings.json" if args.first_repeat == 0 else f"settings_from{args.first_repeat}.json"
    (args.out / name).write_text(json.dumps(settings, indent=1))
    repeats = range(args.first_repeat, args.first_repeat + args.repeats)
    grow_in_rounds(args.out, repeats, args.iterations, args.round, lambda r, target: run_parallel_tempering(
        system, mol.positions, temperatures, args.out / f"repeat{r}.nc", target,
        steps_per_iteration=args.steps, timestep=args.timestep, collision_rate=args.friction, platform=platform,
        seed=args.seed + r, progress=False, integrator=args.integrator,
    ))


if __name__ == "__main__":
    main()
