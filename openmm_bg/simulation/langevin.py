"""Seeded Langevin and GHMC dynamics for openmmtools, and hydrogen mass repartitioning.

openmmtools' :class:`~openmmtools.mcmc.LangevinDynamicsMove` and
:class:`~openmmtools.mcmc.GHMCMove` draw their integrator seed and their velocities from
OpenMM's own clock-seeded generator, so two runs never repeat.  :class:`SeededLangevinMove`
and :class:`SeededGHMCMove` derive both from a user seed and a counter instead.
"""

from __future__ import annotations

import copy

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
from openmmtools.mcmc import GHMCMove, LangevinDynamicsMove

__all__ = ["SeededLangevinMove", "SeededGHMCMove", "repartition_hydrogen_mass", "derive_seed"]


def derive_seed(*entropy: int) -> int:
    """A positive 31-bit seed for OpenMM from integers (a base seed, a counter, ...).

    OpenMM reads a seed of 0 as "pick one at random", so 0 is never returned.
    """
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0] % (2**31 - 2)) + 1


class _Seeded:
    """Integrator seed and velocity redraws from ``seed`` and a counter of applications."""

    def _seed_state(self, seed: int, refresh_velocities: bool) -> None:
        self.seed = int(seed)
        self.n_applied = 0
        self.refresh_velocities = bool(refresh_velocities)

    def _get_integrator(self, thermodynamic_state):
        integrator = super()._get_integrator(thermodynamic_state)
        integrator.setRandomNumberSeed(derive_seed(self.seed, 0))
        return integrator

    def _before_integration(self, context, thermodynamic_state):
        self.n_applied += 1
        if self.refresh_velocities:
            context.setVelocitiesToTemperature(thermodynamic_state.temperature, derive_seed(self.seed, self.n_applied))

    def __getstate__(self):
        serialization = super().__getstate__()
        serialization["seed"] = self.seed
        serialization["n_applied"] = self.n_applied
        serialization["refresh_velocities"] = self.refresh_velocities
        return serialization

    def __setstate__(self, serialization):
        super().__setstate__(serialization)
        self.seed = int(serialization.get("seed", 0))
        self.n_applied = int(serialization.get("n_applied", 0))
        self.refresh_velocities = bool(serialization.get("refresh_velocities", True))


class SeededLangevinMove(_Seeded, LangevinDynamicsMove):
    """``LangevinMiddleIntegrator`` dynamics with reproducible random numbers.

    With ``refresh_velocities`` (the default), each application first draws fresh
    Maxwell-Boltzmann velocities at the state's temperature (what a replica needs after a
    temperature swap), then runs ``n_steps`` steps.  Without it, the velocities of the
    sampler state carry over, and successive applications make one continuous Langevin
    trajectory.

    The redraw is a Gibbs step for the exact dynamics, but only approximately one for the
    discretised dynamics, and with a weak friction the error does not relax between
    redraws.  Measured on ala2-vacuum at 300 K with 1 fs steps and a redraw every 500
    steps, at 1/ps: the cold replica of a parallel-tempering run had a mean potential
    energy in phi < 0 0.25 kT above plain MD (7 standard errors), and a single 5 ns run
    0.29 +- 0.14 kT above Metropolized (GHMC) dynamics; at 10/ps the same run was
    -0.12 +- 0.10 kT from GHMC (``benchmarks/langevin_velocity_refresh.py``).  Hence the
    default friction of 10/ps; with ``refresh_velocities=False`` (continuous MD) 1/ps is fine.

    Parameters
    ----------
    timestep : float, ps
    collision_rate : float, 1/ps
        Friction; 10/ps by default, for the redraws (above).
    n_steps : int
    seed : int
        Base of the integrator seed and of every velocity draw.
    refresh_velocities : bool
    """

    def __init__(
        self,
        timestep: float = 0.002,
        collision_rate: float = 10.0,
        n_steps: int = 500,
        seed: int = 0,
        refresh_velocities: bool = True,
    ):
        super().__init__(
            timestep=timestep * unit.picosecond,
            collision_rate=collision_rate / unit.picosecond,
            n_steps=int(n_steps),
            reassign_velocities=False,
        )
        self._seed_state(seed, refresh_velocities)


class SeededGHMCMove(_Seeded, GHMCMove):
    """Generalized hybrid Monte Carlo (Metropolized Langevin) with reproducible random numbers.

    Every step is accepted or rejected by Metropolis, so the configurations sample the
    Boltzmann distribution exactly whatever the time step: no integrator bias.  Each
    application first redraws Maxwell-Boltzmann velocities at the state's temperature
    (an exact Gibbs step, and what a replica needs after a temperature swap), then runs
    ``n_steps`` GHMC steps.  The acceptance is in ``statistics`` (``n_accepted``,
    ``n_proposed``).  On the Reference platform a step costs about 4 times a
    ``LangevinMiddleIntegrator`` step (ala2-vacuum, ``benchmarks/langevin_velocity_refresh.py``).

    Parameters
    ----------
    timestep : float, ps
    collision_rate : float, 1/ps
    n_steps : int
    seed : int
        Base of the integrator seed and of every velocity draw.
    """

    def __init__(self, timestep: float = 0.001, collision_rate: float = 10.0, n_steps: int = 500, seed: int = 0):
        super().__init__(timestep=timestep * unit.picosecond, collision_rate=collision_rate / unit.picosecond, n_steps=int(n_steps),
                         reassign_velocities=False)
        self._seed_state(seed, True)


def repartition_hydrogen_mass(system: openmm.System, topology: app.Topology, hydrogen_mass: float) -> openmm.System:
    """A copy of ``system`` with hydrogens made heavier, the difference taken from their bonded atom.

    The total mass is unchanged and the configurational distribution does not depend
    on masses, so equilibrium averages are unchanged; only dynamics are slowed, which
    allows a larger time step.

    Parameters
    ----------
    system : openmm.System
    topology : openmm.app.Topology
        Same atoms as ``system``, with bonds.
    hydrogen_mass : float, dalton

    Returns
    -------
    openmm.System
    """
    if topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(
            f"topology has {topology.getNumAtoms()} atoms but the System has {system.getNumParticles()} particles"
        )
    new = copy.deepcopy(system)
    for a, b in topology.bonds():
        if b.element is not None and b.element.symbol == "H":
            a, b = b, a
        if a.element is None or a.element.symbol != "H" or (b.element is not None and b.element.symbol == "H"):
            continue
        m_h = new.getParticleMass(a.index).value_in_unit(unit.dalton)
        m_heavy = new.getParticleMass(b.index).value_in_unit(unit.dalton)
        shift = hydrogen_mass - m_h
        if m_heavy - shift <= m_h:
            raise ValueError(f"hydrogen mass {hydrogen_mass} Da would leave atom {b.index} with {m_heavy - shift:.2f} Da")
        new.setParticleMass(a.index, hydrogen_mass)
        new.setParticleMass(b.index, m_heavy - shift)
    return new
