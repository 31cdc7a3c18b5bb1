"""Hybrid Monte Carlo on OpenMM's native Verlet integrator: exact sampling at the speed of plain MD.

Each trajectory draws Maxwell-Boltzmann velocities, integrates ``trajectory_steps``
velocity-Verlet steps and accepts the end point with probability
``min(1, exp(-(H_end - H_start) / kT))`` (Duane, Kennedy, Pendleton and Roweth, Phys. Lett.
B 195, 216 (1987)).  Velocity Verlet is time-reversible and preserves volume, so the
configurations sample the Boltzmann distribution exactly whatever the time step.

OpenMM's ``VerletIntegrator`` is the leapfrog form: the velocities it holds lag the
positions by half a step.  The move turns it into velocity Verlet by handing it
``v - dt/2 * F/m`` at the start and adding ``dt/2 * F/m`` to what it returns at the end,
so that both energies are measured with velocities at the same time as the positions.
The energy error and the Metropolis test are computed in float64 in NumPy; OpenMM's
own kinetic energy of a leapfrog state (an average of half steps) is never used.

On ala2-vacuum (Reference platform, one thread, hydrogens at 4 Da, 2 fs steps,
50-step trajectories), parallel tempering with 500 HMC steps per replica and iteration ran
at about 0.11-0.13 s per iteration, against 0.20 s for 250 steps of openmmtools'
``GHMCIntegrator`` (a ``CustomIntegrator``): the ``rounds.log`` of
``scripts/run_ala2_tempering.py`` with ``--integrator hmc`` and ``--integrator ghmc``.
Machine-dependent.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
from openmmtools.mcmc import MCMCMove

from .._validation import ensure_count
from ..units import kt_kjmol, positions_nm, read_energy_forces
from .langevin import derive_seed

__all__ = ["SeededHMCMove"]


class SeededHMCMove(MCMCMove):
    """Hybrid Monte Carlo with velocity-Verlet trajectories and reproducible random numbers.

    One application runs ``n_steps // trajectory_steps`` trajectories, each from fresh
    velocities, each accepted or rejected as a whole.  Refuses systems with constraints
    (velocity Verlet without RATTLE is not reversible on the constraint manifold),
    massless (fixed) particles, and thermodynamic states with a pressure (a barostat
    would move the box inside the trajectory).

    openmmtools keeps a state's Andersen thermostat on for an integrator without a heat
    bath; the move switches it off in its own Context.  With a ``CMMotionRemover`` in
    the System, velocities are drawn with zero total momentum (exact for potentials that
    do not depend on where the molecule is, which the move checks from the forces).

    The acceptance is in ``statistics`` (``n_accepted``, ``n_proposed``, counted in
    trajectories).  Force evaluations per application: one at the start, then
    ``trajectory_steps + 1`` per trajectory (:attr:`force_evaluations`).

    Parameters
    ----------
    timestep : float, ps
    n_steps : int
        Verlet steps per application, a multiple of ``trajectory_steps``.
    trajectory_steps : int
        Steps per trajectory (between velocity draws and Metropolis tests).
    seed : int
        Base of every velocity draw and acceptance test; application ``k`` draws from
        ``derive_seed(seed, k)``.
    timestep_jitter : float
        Each trajectory's step is ``timestep * (1 - timestep_jitter * r)`` with ``r``
        uniform in [0, 1): a trajectory whose length is a multiple of a vibration's period
        would bring that vibration back where it started and never mix it (Neal, Handbook of
        MCMC (2011), ch. 5).  The choice does not depend on the state, so it stays exact.
    """

    def __init__(self, timestep: float = 0.002, n_steps: int = 500, trajectory_steps: int = 50, seed: int = 0,
                 timestep_jitter: float = 0.2):
        timestep = float(timestep)
        self.timestep_jitter = float(timestep_jitter)
        if not 0.0 <= self.timestep_jitter < 1.0:
            raise ValueError(f"timestep_jitter must be in [0, 1), got {timestep_jitter!r}")
        self.n_steps = ensure_count(n_steps, "n_steps")
        self.trajectory_steps = ensure_count(trajectory_steps, "trajectory_steps")
        if not np.isfinite(timestep) or timestep <= 0:
            raise ValueError(f"timestep must be a positive number of ps, got {timestep!r}")
        self.timestep = timestep * unit.picosecond  # a Quantity, as openmmtools' timing report expects
        if self.n_steps % self.trajectory_steps:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of trajectory_steps ({self.trajectory_steps})")
        self.seed = int(seed)
        self.n_applied = 0
        self.n_accepted = 0
        self.n_proposed = 0

    @property
    def n_trajectories(self) -> int:
        """Trajectories per application."""
        return self.n_steps // self.trajectory_steps

    @property
    def force_evaluations(self) -> int:
        """Force (and energy) evaluations per application."""
        return 1 + self.n_trajectories * (self.trajectory_steps + 1)

    @property
    def statistics(self) -> dict:
        """``n_accepted`` and ``n_proposed`` trajectories so far."""
        return dict(n_accepted=self.n_accepted, n_proposed=self.n_proposed)

    @statistics.setter
    def statistics(self, value: dict) -> None:
        self.n_accepted = int(value["n_accepted"])
        self.n_proposed = int(value["n_proposed"])

    def reset_statistics(self) -> None:
        self.n_accepted = 0
        self.n_proposed = 0

    def apply(self, thermodynamic_state, sampler_state, context_cache=None):
        """Run ``n_steps // trajectory_steps`` HMC trajectories from ``sampler_state``, which is updated in place."""
        if thermodynamic_state.pressure is not None:
            raise ValueError("SeededHMCMove samples at constant volume; the thermodynamic state has a pressure")
        dt = self.timestep.value_in_unit(unit.picosecond)
        integrator = openmm.VerletIntegrator(dt)
        context, integrator = self._get_context_cache(context_cache).get_context(thermodynamic_state, integrator)
        system = context.getSystem()
        if system.getNumConstraints():
            raise ValueError(f"SeededHMCMove needs a System without constraints; this one has {system.getNumConstraints()}")
        mass = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
        if np.any(mass <= 0):
            raise ValueError(f"SeededHMCMove cannot move massless particles (indices {np.flatnonzero(mass <= 0)[:5].tolist()} ...)")
        # openmmtools keeps the state's Andersen thermostat active for an integrator without a
        # heat bath; its collisions inside a trajectory would break the Metropolis test.
        if openmm.AndersenThermostat.CollisionFrequency() in context.getParameters():
            context.setParameter(openmm.AndersenThermostat.CollisionFrequency(), 0.0)
        # A CMMotionRemover zeroes the total momentum at every step: velocities are drawn with
        # none, and the forces must sum to zero (a translation-invariant potential) to keep it so.
        momentum_free = any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces())
        sampler_state.apply_to_context(context, ignore_velocities=True)
        self.n_applied += 1
        rng = np.random.default_rng(derive_seed(self.seed, self.n_applied))
        kT = kt_kjmol(thermodynamic_state.temperature)
        inverse_mass = (1.0 / mass)[:, None]
        sigma = np.sqrt(kT * inverse_mass)

        state = context.getState(getEnergy=True, getForces=True, getPositions=True)
        f = np.empty((system.getNumParticles(), 3))
        x, u = positions_nm(state.getPositions(asNumpy=True)), read_energy_forces(state, f)
        if not (np.isfinite(u) and np.all(np.isfinite(f))):
            raise ValueError(f"the starting configuration has a non-finite energy or force (U = {u} kJ/mol)")
        if momentum_free:
            _check_zero_net_force(f)
        v_out = None
        try:
            for _ in range(self.n_trajectories):
                v = rng.normal(size=x.shape) * sigma
                if momentum_free:  # the Gaussian conditioned on zero total momentum
                    v -= np.sum(mass[:, None] * v, axis=0) / mass.sum()
                h_start = u + 0.5 * np.sum(mass[:, None] * v * v)
                step = dt * (1.0 - self.timestep_jitter * rng.random())
                integrator.setStepSize(step)
                half_kick = 0.5 * step * inverse_mass  # (nm/ps) per (kJ/mol/nm)
                x_end, v_end, u_end, f_end = velocity_verlet(context, integrator, v, f, half_kick, self.trajectory_steps)
                h_end = u_end + 0.5 * np.sum(mass[:, None] * v_end * v_end)
                log_accept = -(h_end - h_start) / kT
                self.n_proposed += 1
                finite = np.isfinite(log_accept) and np.all(np.isfinite(f_end))
                if finite and momentum_free:
                    _check_zero_net_force(f_end)
                if finite and np.log(rng.random()) < log_accept:
                    self.n_accepted += 1
                    x, u, f, v_out = x_end, u_end, f_end, v_end
                else:
                    context.setPositions(x)
                    v_out = v  # a fresh Maxwell-Boltzmann draw, as good as any for the next move
        finally:
            integrator.setStepSize(dt)  # so that the context cache finds this Context again
        context.setPositions(x)
        context.setVelocities(v_out)
        sampler_state.update_from_context(context)

    def __getstate__(self):
        return dict(timestep=self.timestep.value_in_unit(unit.picosecond), timestep_jitter=self.timestep_jitter, n_steps=self.n_steps, trajectory_steps=self.trajectory_steps, seed=self.seed,
                    n_applied=self.n_applied, n_accepted=self.n_accepted, n_proposed=self.n_proposed)

    def __setstate__(self, serialization):
        self.timestep = float(serialization["timestep"]) * unit.picosecond
        self.timestep_jitter = float(serialization.get("timestep_jitter", 0.0))
        self.n_steps = int(serialization["n_steps"])
        self.trajectory_steps = int(serialization["trajectory_steps"])
        self.seed = int(serialization["seed"])
        self.n_applied = int(serialization["n_applied"])
        self.n_accepted = int(serialization.get("n_accepted", 0))
        self.n_proposed = int(serialization.get("n_proposed", 0))


def velocity_verlet(context, integrator, velocities, forces, half_kick, n_steps):
    """Run ``n_steps`` velocity-Verlet steps on OpenMM's leapfrog ``VerletIntegrator``.

    The Context holds the starting positions, at which ``forces`` were computed.  The
    leapfrog integrator is given ``velocities - half_kick * forces`` (its half-step lag)
    and its final half-step velocities get ``half_kick * forces`` at the end point.

    Parameters
    ----------
    context : openmm.Context
    integrator : openmm.VerletIntegrator
        The Context's integrator.
    velocities, forces : ndarray, shape (n_atoms, 3), nm/ps and kJ/mol/nm
        At the starting positions, at the same time.
    half_kick : ndarray, shape (n_atoms, 1)
        ``timestep / (2 * mass)``.
    n_steps : int

    Returns
    -------
    positions, velocities : ndarray, shape (n_atoms, 3)
        At the end point, at the same time.
    potential : float, kJ/mol
    forces : ndarray, shape (n_atoms, 3)
    """
    context.setVelocities(velocities - half_kick * forces)
    integrator.step(n_steps)
    end = context.getState(getEnergy=True, getForces=True, getPositions=True, getVelocities=True)
    forces_end = np.empty_like(forces)
    potential = read_energy_forces(end, forces_end)
    velocities_end = end.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    return positions_nm(end.getPositions(asNumpy=True)), velocities_end + half_kick * forces_end, potential, forces_end


def _check_zero_net_force(forces: np.ndarray) -> None:
    net = np.abs(forces.sum(axis=0)).max()
    if net > 1e-6 * max(1.0, np.abs(forces).sum()):
        raise ValueError(
            f"the System has a CMMotionRemover but its forces do not sum to zero (net {net:.3g} kJ/mol/nm): the "
            "remover would change the momentum inside a trajectory; remove the CMMotionRemover for hybrid Monte Carlo"
        )
