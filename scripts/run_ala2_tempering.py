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
reference (issue 16).  ``--integrator hmc`` is exact too (hybrid Monte Carlo on OpenMM's
native Verlet integrator, ``SeededHMCMove``) and 3-4 times faster per step.

``--results DIR`` carries a run across machines and sessions: after every round each
repeat's NetCDF file is condensed into ``DIR/repeat<r>/segment<k>.npz`` (energies, phi and
psi per iteration and temperature, the last configurations; see
``openmm_bg.simulation.segments``), which is small enough to commit.  Run again on a
machine without the NetCDF files, the same command starts segment ``k + 1`` of every repeat
from where the committed segment ``k`` ended, with a fresh seed derived from ``--seed``,
the repeat and the segment; ``--iterations`` counts over all segments.  The exact
reference of issue 16 (``benchmarks/results/ala2-vacuum-pt-hmc``) is grown this way::

    OMP_NUM_THREADS=1 nice -n 5 python scripts/run_ala2_tempering.py ala2-vacuum runs/ala2-vacuum-pt-hmc \
        --results benchmarks/results/ala2-vacuum-pt-hmc --repeats 2 --first-repeat 0 --iterations 100000 \
        --round 500 --integrator hmc --trajectory-steps 50 --hydrogen-mass 4 --timestep 0.002 --steps 500 \
        --t-max 1000 --n-temperatures 8 --platform Reference --seed 9200

(and the same with ``--first-repeat 2`` in a second process).

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

from openmm_bg.simulation.hmc import SeededHMCMove
from openmm_bg.simulation.langevin import derive_seed, repartition_hydrogen_mass
from openmm_bg.simulation.rounds import grow_in_rounds
from openmm_bg.simulation.segments import check_settings, committed_segments, export_segment, segment_path
from openmm_bg.simulation.tempering import energy_evaluations, run_parallel_tempering
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
    parser.add_argument("--integrator", choices=["langevin", "ghmc", "hmc"], default="langevin",
                        help="replica dynamics: langevin (the bundled references), ghmc (Metropolized, exact; about 4x slower "
                             "per step) or hmc (hybrid Monte Carlo on the native Verlet integrator, exact, 3-4x faster than ghmc)")
    parser.add_argument("--trajectory-steps", type=int, default=50, help="steps per HMC trajectory (--integrator hmc)")
    parser.add_argument("--platform", default=None)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of committed segments to grow and continue from (see above)")
    args = parser.parse_args()

    mol = get_system(args.system)
    system = mol.system if args.hydrogen_mass is None else repartition_hydrogen_mass(mol.system, mol.openmm_topology, args.hydrogen_mass)
    temperatures = np.geomspace(args.t_min, args.t_max, args.n_temperatures)
    platform = args.platform or mol.platform
    args.out.mkdir(parents=True, exist_ok=True)
    settings = dict(vars(args), out=str(args.out), results=None if args.results is None else str(args.results),
                    temperatures=temperatures.tolist(), platform=platform)
    name = "settings.json" if args.first_repeat == 0 else f"settings_from{args.first_repeat}.json"
    (args.out / name).write_text(json.dumps(settings, indent=1))
    repeats = range(args.first_repeat, args.first_repeat + args.repeats)

    def run(r, target, storage, positions, seed):
        run_parallel_tempering(
            system, positions, temperatures, storage, target,
            steps_per_iteration=args.steps, timestep=args.timestep, collision_rate=args.friction, platform=platform,
            seed=seed, progress=False, integrator=args.integrator, trajectory_steps=args.trajectory_steps,
        )

    if args.results is None:
        grow_in_rounds(args.out, repeats, args.iterations, args.round,
                       lambda r, target: run(r, target, args.out / f"repeat{r}.nc", mol.positions, args.seed + r))
        return

    check_settings(args.results, settings, ["system", "t_min", "t_max", "n_temperatures", "steps", "timestep", "hydrogen_mass",
                                            "friction", "integrator", "trajectory_steps", "seed"])
    per_replica = (SeededHMCMove(args.timestep, args.steps, args.trajectory_steps).force_evaluations
                   if args.integrator == "hmc" else args.steps)
    per_iteration = energy_evaluations(1, len(temperatures), per_replica) - len(temperatures)
    cvs = {**{name: mol.collective_variables[name] for name in ("phi", "psi")}, **omega_variables(mol)}
    plan = {r: _segment_plan(args, mol, r) for r in repeats}

    def advance(r, target):
        k, offset, positions, seed = plan[r]
        storage = args.out / _storage_name(r, k)
        if target > offset:
            run(r, target - offset, storage, positions, seed)
        elif not storage.exists():
            return f"holds {offset} iterations in earlier segments"
        held = export_segment(storage, segment_path(args.results, r, k), cvs, segment=k, seed=seed,
                              force_evaluations_per_iteration=per_iteration)
        return f"reached {offset + held['iterations']} iterations (segment {k})"

    grow_in_rounds(args.out, repeats, args.iterations, args.round, advance)


def omega_variables(mol) -> dict:
    """The two peptide-bond torsions of alanine dipeptide (radians; trans near +-pi).

    ``omega1`` is CH3-C(ACE)-N-CA, ``omega2`` CA-C-N-C(NME).  The hot replicas visit cis
    bonds, which the exchanges carry down; the analysis uses them to define the states.
    """
    import mdtraj

    names = {(a.residue.name, a.name): a.index for a in mol.topology.atoms}
    quads = np.array([[names["ACE", "CH3"], names["ACE", "C"], names["ALA", "N"], names["ALA", "CA"]],
                      [names["ALA", "CA"], names["ALA", "C"], names["NME", "N"], names["NME", "C"]]])

    def torsion(k):
        return lambda xyz: mdtraj.compute_dihedrals(mdtraj.Trajectory(np.asarray(xyz), mol.topology), quads[k : k + 1])[:, 0]

    return {"omega1": torsion(0), "omega2": torsion(1)}


def _storage_name(repeat: int, segment: int) -> str:
    return f"repeat{repeat}.nc" if segment == 0 else f"repeat{repeat}-segment{segment}.nc"


def _segment_plan(args, mol, r):
    """(segment, iterations before it, its starting positions, its seed) for repeat ``r``.

    Continue the newest committed segment if its NetCDF file is here, else start the next.
    """
    n = committed_segments(args.results, r)
    k = n - 1 if n and (args.out / _storage_name(r, n - 1)).exists() else n
    if k == 0:
        return 0, 0, mol.positions, args.seed + r
    offset = 0
    for j in range(k):
        with np.load(segment_path(args.results, r, j)) as f:
            offset += int(f["iterations"])
            positions = f["final_positions"].astype(np.float64)
    return k, offset, positions, derive_seed(args.seed, r, k)


if __name__ == "__main__":
    main()
