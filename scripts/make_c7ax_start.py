"""Write a C7ax (phi > 0) starting structure of ala2-vacuum for MD in the phi > 0 basin.

Plain MD at 300 K almost never crosses into phi > 0 (20 ns crossed phi = 0 about 12
times, each for about a picosecond), so the training data of that basin start from a
structure placed there: the bundled C7eq structure is pulled to
phi = +75 deg, psi = -65 deg by harmonic-cosine torsion restraints (energy minimisation,
then 20 ps of restrained Langevin MD at 300 K), then released, minimised without the
restraints and written as a PDB.  The MD that follows starts from it.

    python scripts/make_c7ax_start.py data/ala2-vacuum-c7ax-start.pdb
"""

import argparse
import sys

import mdtraj as md
import numpy as np
import openmm
from openmm import unit

from openmm_bg.molecules.collective_variables import backbone_dihedral_indices
from openmm_bg.molecules.systems import get_system


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--phi", type=float, default=75.0, help="deg")
    parser.add_argument("--psi", type=float, default=-65.0, help="deg")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    mol = get_system("ala2-vacuum")
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(mol.system))
    restraint = openmm.CustomTorsionForce("0.5*k*(1 - cos(theta - theta0))")
    restraint.addGlobalParameter("k", 2000.0)  # kJ/mol
    restraint.addPerTorsionParameter("theta0")
    phi = backbone_dihedral_indices(mol.topology, "phi")[0]
    psi = backbone_dihedral_indices(mol.topology, "psi")[0]
    restraint.addTorsion(*[int(i) for i in phi], [np.deg2rad(args.phi)])
    restraint.addTorsion(*[int(i) for i in psi], [np.deg2rad(args.psi)])
    system.addForce(restraint)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.001 * unit.picoseconds)
    integrator.setRandomNumberSeed(args.seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(300 * unit.kelvin, args.seed)
    integrator.step(20000)
    context.setParameter("k", 0.0)
    openmm.LocalEnergyMinimizer.minimize(context)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    traj = md.Trajectory(positions[None].astype(np.float32), mol.topology)
    angles = np.rad2deg([md.compute_dihedrals(traj, [phi])[0, 0], md.compute_dihedrals(traj, [psi])[0, 0]])
    if not angles[0] > 0:
        sys.exit(f"the released structure left the phi > 0 basin (phi = {angles[0]:.1f} deg)")
    traj.save_pdb(args.output)
    print(f"wrote {args.output}: phi {angles[0]:.1f} deg, psi {angles[1]:.1f} deg")


if __name__ == "__main__":
    main()
