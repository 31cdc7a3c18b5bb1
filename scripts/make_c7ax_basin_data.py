"""Generator training data for the phi > 0 basin of ala2-vacuum: MD held in the basin by a flat-bottom restraint.

Unbiased MD started in C7ax leaves the basin after a few ns (k_BA of about 0.4 per ns
in the bundled runs), so the phi > 0 state gets far fewer training frames than phi < 0,
and the generator's density there is the worse one.  Here a flat-bottom restraint on phi,

    V(phi) = 0.5 k max(0, |wrap(phi - centre)| - half_width)^2,

is added to the unbiased system.  V is exactly zero for ``centre - half_width <= phi <=
centre + half_width`` (by default 6 to 120 deg: the C7ax and alpha_L region), so inside that
window the frames sample the unbiased Boltzmann distribution of ala2-vacuum; V only turns
the trajectory back at the barriers.  Training data need not be unbiased anyway: the
generator's importance weights use the unbiased energy alone.

The MD is :func:`openmm_bg.simulation.run_md` (LangevinMiddleIntegrator, resumable) on the
restrained system, started from ``data/ala2-vacuum-c7ax-start.pdb``.

    OPENMM_CPU_THREADS=1 python scripts/make_c7ax_basin_data.py runs/issue7b/ala2-c7ax-basin.dcd
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import mdtraj as md
import numpy as np
import openmm

from openmm_bg.molecules.collective_variables import backbone_dihedral_indices
from openmm_bg.simulation.dynamics import run_md
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference import DATA_DIR


def restrained_system(system: openmm.System, phi_indices, centre: float, half_width: float, k: float) -> openmm.System:
    """A copy of ``system`` plus the flat-bottom restraint on phi (angles in rad, k in kJ/mol/rad^2)."""
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    force = openmm.CustomTorsionForce(
        "0.5*k_fb*step(excess)*excess^2; excess = abs(d) - half_width; d = dtheta - 2*pi*floor((dtheta + pi)/(2*pi)); "
        f"dtheta = theta - centre; pi = {math.pi!r}"
    )
    force.addGlobalParameter("k_fb", k)
    force.addGlobalParameter("centre", centre)
    force.addGlobalParameter("half_width", half_width)
    force.addTorsion(*[int(i) for i in phi_indices], [])
    copy.addForce(force)
    return copy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="trajectory (.dcd); the topology goes beside it as .pdb")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--steps-per-frame", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=0.001, help="ps")
    parser.add_argument("--equilibration-steps", type=int, default=10000)
    parser.add_argument("--centre", type=float, default=63.0, help="deg")
    parser.add_argument("--half-width", type=float, default=57.0, help="deg; the restraint is zero within centre +- half-width")
    parser.add_argument("--k", type=float, default=1000.0, help="kJ/mol/rad^2")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)

    mol = get_system("ala2-vacuum")
    phi_indices = backbone_dihedral_indices(mol.topology, "phi")[0]
    system = restrained_system(mol.system, phi_indices, np.deg2rad(args.centre), np.deg2rad(args.half_width), args.k)
    start = md.load(str(Path(DATA_DIR) / "ala2-vacuum-c7ax-start.pdb")).xyz[0].astype(np.float64)
    path = run_md(system, mol.topology, start, args.output, args.frames, temperature=mol.temperature,
                  steps_per_frame=args.steps_per_frame, timestep=args.timestep, platform="Reference",
                  equilibration_steps=args.equilibration_steps, seed=args.seed, progress=False)
    trajectory = md.load(str(path), top=str(path.with_suffix(".pdb")))
    phi = np.rad2deg(md.compute_dihedrals(trajectory, [phi_indices])[:, 0])
    inside = np.abs((phi - args.centre + 180.0) % 360.0 - 180.0) <= args.half_width
    print(f"wrote {path}: {trajectory.n_frames} frames; phi {phi.min():.1f} to {phi.max():.1f} deg; "
          f"{100 * inside.mean():.2f} % of the frames inside the flat bottom (unbiased there)")


if __name__ == "__main__":
    main()
