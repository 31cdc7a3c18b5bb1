"""A Boltzmann-generator move in an openmmtools simulation, from start to finish.

Langevin dynamics make the local moves and ``BoltzmannGeneratorMove`` the large jumps
between the phi < 0 and phi > 0 states of alanine dipeptide; the Metropolis-Hastings
acceptance keeps the ensemble exact whatever the generator's quality.

Run from the repository root (any generator checkpoint from ``openmm-bg demo`` or
``openmm-bg train`` works; ``--quick`` makes a poor one in under a minute, which is
still exact, only slower to mix)::

    openmm-bg demo --quick --output /tmp/quick
    python examples/bg_move_in_your_simulation.py /tmp/quick/generator.pt --iterations 200
"""

from __future__ import annotations

import argparse

import numpy as np
import openmm
import openmm.unit as unit
from openmmtools import cache, mcmc, states

from openmm_bg.moves import BoltzmannGeneratorMove
from openmm_bg.sampling import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", help="generator checkpoint (.pt); it carries its molecule")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--md-steps", type=int, default=250, help="Langevin steps (1 fs) per iteration")
    parser.add_argument("--proposals", type=int, default=10, help="generator proposals per iteration")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    # the checkpoint carries its System, topology, positions and temperature
    _, molecule, temperature, _ = load_checkpoint(args.generator)
    thermodynamic_state = states.ThermodynamicState(molecule.system, temperature * unit.kelvin)
    sampler_state = states.SamplerState(molecule.positions * unit.nanometer)

    bg = BoltzmannGeneratorMove(args.generator, n_proposals=args.proposals, seed=args.seed)
    langevin = mcmc.LangevinDynamicsMove(timestep=1.0 * unit.femtosecond, collision_rate=1.0 / unit.picosecond, n_steps=args.md_steps)
    move = mcmc.SequenceMove([langevin, bg])
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(molecule.platform))

    phi = molecule.collective_variables["phi"]
    visits = []
    for _ in range(args.iterations):
        move.apply(thermodynamic_state, sampler_state, context_cache)
        visits.append(float(phi(sampler_state.positions.value_in_unit(unit.nanometer)[None])[0]) > 0)
    visits = np.asarray(visits)
    changes = int(np.sum(visits[1:] != visits[:-1]))
    print(f"BG move statistics: {bg.statistics}")
    print(f"iterations {args.iterations}: phi > 0 in {100 * visits.mean():.1f} % of them, {changes} changes of state")


if __name__ == "__main__":
    main()
