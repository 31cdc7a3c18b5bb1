r"""The two-dimensional bistable dimer in a bath of repulsive particles.

The condensed-phase example of Noé, Olsson, Köhler & Wu, Science 365, eaaw1147 (2019),
with the defaults of the paper's published model: particles 0 and 1 form a dimer, the
other ``n_solvent`` (36) are solvent, and in the plane, with positions in nm (one model
length unit is one nm), the reduced energy in kT is

.. math::

    u = \sum_{i<j,\ (i,j) \ne (0,1)} \varepsilon \Big(\frac{r_m}{r_{ij}}\Big)^{12}
        + c\,s - a\,s^2 + b\,s^4
        + k\,(x_0 + x_1)^2 + k\,y_0^2 + k\,y_1^2
        + \sum_i \sum_{v \in \{x_i, y_i\}} 2\,k_w \max(0, |v| - h)^2

with ``s = 2 (d - d_mid)``, ``d`` the dimer distance, ``eps = 1``, ``rm = 1.1``,
``a = 25``, ``b = 10``, ``c = -0.5``, ``d_mid = 1.5``, ``k = 20``, ``k_w = 100`` and the
wall at ``h = 3``.  (The published code writes the wall as ``(sign(e) + 1) k_w e^2``
with ``e = |v| - h``, which is ``2 k_w e^2`` outside and zero inside.)  The dimer bond
alone has minima at ``d = 0.9435`` (closed) and ``2.0615`` nm (open) and its barrier
top, 15.1 kT above the closed minimum and 16.2 kT above the open one, at ``d = 1.4950`` nm
(:meth:`ParticleDimer.stationary_distances`).

:func:`particle_dimer_system` builds the same energy as an OpenMM ``System`` of
three-dimensional particles.  Its potential in kJ/mol is ``kT [u(x, y) + sum_i z_i^2 / 2]``
with ``kT`` at the ``temperature`` it is built for, so the reduced energy at that
temperature of positions ``(x, y, 0)`` is exactly ``u``, as for the toys of
:mod:`openmm_bg.energies.toy_systems`.  Every distance in ``u`` is measured in the
plane, so ``z`` is independent of ``(x, y)``: at the System's temperature each ``z_i`` is
a standard normal in nm and the ``(x, y)`` marginal is the model's density, which makes
MD on the System well posed.  A generator acts on the ``(x, y)`` coordinates only
(:func:`in_plane` puts them back at ``z = 0``).  At another temperature ``T`` the
System's reduced energy is ``u T0 / T``: the model's temperature is ``T / T0`` with
``T0`` the one the System was built for.

The energy is written once, on operators that numpy arrays and torch tensors share:
:meth:`ParticleDimer.energy_numpy` evaluates it on numpy arrays, the
:class:`~openmm_bg.energies.Energy` call on tensors with gradients, and the OpenMM
System is an independent implementation of it in OpenMM's expression language.
"""

from __future__ import annotations

import numpy as np
import openmm
from torch import Tensor

from .._validation import ensure_count, ensure_positive
from ..units import kt_kjmol, positions_nm
from .base import Energy

__all__ = ["ParticleDimer", "particle_dimer_system", "dimer_distance", "in_plane", "start_positions", "ARGON_MASS"]

#: particle mass of the System (amu); it sets the time scale of MD only
ARGON_MASS = 39.948


def _relu(t):
    """``max(0, t)`` with operators numpy and torch share."""
    return 0.5 * (t + abs(t))


class ParticleDimer(Energy):
    """The particle dimer's reduced energy on in-plane positions (module notes).

    Parameters
    ----------
    n_solvent : int
        Solvent particles; the System has ``n_solvent + 2`` particles.
    eps, rm : float
        Repulsion ``eps (rm / r)^12`` between every pair but the dimer (kT, nm).
    a, b, c, d_mid : float
        Dimer bond ``c s - a s^2 + b s^4``, ``s = 2 (d - d_mid)`` (kT; ``d_mid`` in nm).
    k_restraint : float
        ``k (x0 + x1)^2 + k y0^2 + k y1^2`` (kT / nm^2).
    box_half, k_wall : float
        Wall ``2 k_wall max(0, |v| - box_half)^2`` on every coordinate ``v`` (nm, kT / nm^2).

    Notes
    -----
    Call with a tensor of shape ``(batch, n_particles, 2)`` or ``(batch, 2 n_particles)``,
    positions in nm; returns the reduced energy, shape ``(batch,)``, kT.
    """

    def __init__(
        self,
        n_solvent: int = 36,
        eps: float = 1.0,
        rm: float = 1.1,
        a: float = 25.0,
        b: float = 10.0,
        c: float = -0.5,
        d_mid: float = 1.5,
        k_restraint: float = 20.0,
        box_half: float = 3.0,
        k_wall: float = 100.0,
    ):
        self.n_solvent = ensure_count(n_solvent, "n_solvent", minimum=0)
        self.eps = ensure_positive(eps, "eps", "kT")
        self.rm = ensure_positive(rm, "rm", "nm")
        self.a = float(a)
        self.b = ensure_positive(b, "b (the quartic coefficient of the dimer bond)", "kT")
        self.c = float(c)
        self.d_mid = ensure_positive(d_mid, "d_mid", "nm")
        self.k_restraint = ensure_positive(k_restraint, "k_restraint", "kT/nm^2")
        self.box_half = ensure_positive(box_half, "box_half", "nm")
        self.k_wall = ensure_positive(k_wall, "k_wall", "kT/nm^2")
        self.event_shape = (self.n_particles, 2)
        upper = np.triu_indices(self.n_particles, 1)
        repulsive = ~((upper[0] == 0) & (upper[1] == 1))
        self._pairs = (upper[0][repulsive], upper[1][repulsive])

    @property
    def n_particles(self) -> int:
        """Dimer plus solvent particles."""
        return self.n_solvent + 2

    def dimer_bond(self, d):
        """Dimer bond energy ``c s - a s^2 + b s^4``, ``s = 2 (d - d_mid)``; kT, same shape as ``d`` (nm)."""
        s = 2.0 * (d - self.d_mid)
        s2 = s * s
        return self.c * s - self.a * s2 + self.b * s2 * s2

    def _terms(self, xy):
        """The four energy terms of ``xy`` (batch, n_particles, 2), each shape (batch,), kT."""
        i, j = self._pairs
        delta = xy[:, i, :] - xy[:, j, :]
        r2 = (delta * delta).sum(-1)
        inverse6 = (self.rm * self.rm / r2) ** 3
        repulsion = self.eps * (inverse6 * inverse6).sum(-1)
        bond = xy[:, 0, :] - xy[:, 1, :]
        bond = self.dimer_bond(((bond * bond).sum(-1)) ** 0.5)
        restraint = self.k_restraint * ((xy[:, 0, 0] + xy[:, 1, 0]) ** 2 + xy[:, 0, 1] ** 2 + xy[:, 1, 1] ** 2)
        outside = _relu(abs(xy) - self.box_half)
        wall = 2.0 * self.k_wall * (outside * outside).sum(-1).sum(-1)
        return repulsion, bond, restraint, wall

    def _energy(self, x: Tensor) -> Tensor:
        return sum(self._terms(x))

    def energy_numpy(self, xy: np.ndarray) -> np.ndarray:
        """Reduced energy on a numpy array, float64.

        Parameters
        ----------
        xy : ndarray, shape (n_frames, n_particles, 2) or (n_particles, 2), nm

        Returns
        -------
        ndarray, shape (n_frames,), float64, kT
        """
        xy = np.asarray(xy, dtype=np.float64)
        xy = xy[None] if xy.ndim == 2 else xy
        if xy.ndim != 3 or xy.shape[1:] != self.event_shape:
            raise ValueError(f"positions must have shape (n_frames, {self.n_particles}, 2) in nm, got {xy.shape}")
        with np.errstate(divide="ignore"):  # two particles on top of each other: +inf, as it should be
            return sum(self._terms(xy))

    def stationary_distances(self) -> tuple[float, float, float]:
        """Dimer distances of the bond's closed minimum, barrier top and open minimum, nm.

        The real roots of ``du/ds = c - 2 a s + 4 b s^3``; the bond has two minima when
        ``a > 0`` and ``|c|`` is small enough.

        Raises
        ------
        ValueError
            If the bond is not bistable.
        """
        roots = np.roots([4.0 * self.b, 0.0, -2.0 * self.a, self.c])
        real = np.sort(roots[np.abs(roots.imag) < 1e-12].real)
        if len(real) != 3:
            raise ValueError(f"the dimer bond with a={self.a}, b={self.b}, c={self.c} has one minimum, not two")
        closed, top, open_ = self.d_mid + 0.5 * real
        return float(closed), float(top), float(open_)

    def barrier_distance(self) -> float:
        """Dimer distance of the bond's barrier top, nm: where the closed and open states split."""
        return self.stationary_distances()[1]


def dimer_distance(positions: np.ndarray) -> np.ndarray:
    """In-plane distance between particles 0 and 1, nm.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_particles, 2 or 3) or (n_particles, 2 or 3), nm
        ``z``, if present, is ignored: every distance of the model is in the plane.

    Returns
    -------
    ndarray, shape (n_frames,), float64, nm
    """
    xyz = np.asarray(positions, dtype=np.float64)
    xyz = xyz[None] if xyz.ndim == 2 else xyz
    if xyz.ndim != 3 or xyz.shape[1] < 2 or xyz.shape[2] not in (2, 3):
        raise ValueError(f"positions must have shape (n_frames, n_particles >= 2, 2 or 3) in nm, got {xyz.shape}")
    delta = xyz[:, 0, :2] - xyz[:, 1, :2]
    return np.sqrt((delta * delta).sum(-1))


def in_plane(xy: np.ndarray) -> np.ndarray:
    """In-plane positions as three-dimensional ones at ``z = 0``.

    Parameters
    ----------
    xy : ndarray, shape (..., n_particles, 2), nm

    Returns
    -------
    ndarray, shape (..., n_particles, 3), float64, nm
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim < 2 or xy.shape[-1] != 2:
        raise ValueError(f"in-plane positions must have shape (..., n_particles, 2), got {xy.shape}")
    return np.concatenate([xy, np.zeros(xy.shape[:-1] + (1,))], axis=-1)


_PLANAR_R2 = "(x1 - x2)^2 + (y1 - y2)^2"


def particle_dimer_system(
    energy: ParticleDimer | None = None, temperature: float = 300.0, mass: float = ARGON_MASS
) -> openmm.System:
    """The particle dimer of :class:`ParticleDimer` as an OpenMM System (module notes).

    Every distance is in the plane, so the pair terms are ``CustomCompoundBondForce``
    bonds on ``x`` and ``y`` (a ``CustomNonbondedForce`` would measure ``r`` in three
    dimensions).  Global parameters carry the prefix ``pd_``, so they cannot clash with
    integrator variables such as openmmtools' ``a``, ``b`` and ``kT``.

    Parameters
    ----------
    energy : ParticleDimer, optional
        Its parameters become the System's; default ``ParticleDimer()``.
    temperature : float, K
        ``kT`` (global parameter ``pd_kT``, kJ/mol) converts the reduced energy to kJ/mol.
    mass : float, amu
        Of every particle; sets the time scale of MD only.

    Returns
    -------
    openmm.System
        ``n_particles`` particles with potential ``kT [u(x, y) + sum_i z_i^2 / 2]`` in
        kJ/mol, positions in nm; forces named ``repulsion``, ``dimer bond``,
        ``dimer restraint``, ``wall`` and ``z``.
    """
    energy = ParticleDimer() if energy is None else energy
    if not isinstance(energy, ParticleDimer):
        raise TypeError(f"energy must be a ParticleDimer, got {type(energy).__name__}")
    mass = ensure_positive(mass, "mass", "amu")
    parameters = {
        "pd_kT": kt_kjmol(temperature), "pd_eps": energy.eps, "pd_rm": energy.rm, "pd_a": energy.a, "pd_b": energy.b,
        "pd_c": energy.c, "pd_dmid": energy.d_mid, "pd_k": energy.k_restraint, "pd_half": energy.box_half, "pd_wall": energy.k_wall,
    }
    system = openmm.System()
    for _ in range(energy.n_particles):
        system.addParticle(mass)

    def add(force, name: str) -> None:
        force.setName(name)
        for key in parameters:
            force.addGlobalParameter(key, parameters[key])
        system.addForce(force)

    repulsion = openmm.CustomCompoundBondForce(2, f"pd_kT * pd_eps * (pd_rm^2 / ({_PLANAR_R2}))^6")
    for i, j in zip(*energy._pairs):
        repulsion.addBond([int(i), int(j)], [])
    add(repulsion, "repulsion")
    bond = openmm.CustomCompoundBondForce(2, f"pd_kT * (pd_c * s - pd_a * s^2 + pd_b * s^4); s = 2 * (sqrt({_PLANAR_R2}) - pd_dmid)")
    bond.addBond([0, 1], [])
    add(bond, "dimer bond")
    restraint = openmm.CustomCompoundBondForce(2, "pd_kT * pd_k * ((x1 + x2)^2 + y1^2 + y2^2)")
    restraint.addBond([0, 1], [])
    add(restraint, "dimer restraint")
    wall = openmm.CustomExternalForce("pd_kT * 2 * pd_wall * (max(0, abs(x) - pd_half)^2 + max(0, abs(y) - pd_half)^2)")
    # z is no part of the model: a standard normal at the System's temperature, independent of (x, y)
    plane = openmm.CustomExternalForce("pd_kT * z^2 / 2")
    for i in range(energy.n_particles):
        wall.addParticle(i, [])
        plane.addParticle(i, [])
    add(wall, "wall")
    add(plane, "z")
    return system


def start_positions(energy: ParticleDimer | None = None, distance: float | None = None, relax: bool = True) -> np.ndarray:
    """A start with the dimer at a given distance on the x axis and the solvent on a lattice.

    The dimer sits at ``(-distance / 2, 0)`` and ``(distance / 2, 0)``; the solvent takes
    the ``n_solvent`` points of a square lattice of 7 x 7 (or more) points spanning the box
    that lie farthest from the dimer.  With ``relax`` the energy is then minimised
    (OpenMM's L-BFGS on the Reference platform, deterministic), which keeps the dimer in
    the state it starts in.

    Parameters
    ----------
    energy : ParticleDimer, optional
        Default ``ParticleDimer()``.
    distance : float, nm, optional
        Dimer distance; default the closed minimum of the bond.
    relax : bool

    Returns
    -------
    ndarray, shape (n_particles, 2), float64, nm
    """
    energy = ParticleDimer() if energy is None else energy
    distance = energy.stationary_distances()[0] if distance is None else ensure_positive(distance, "distance", "nm")
    n_side = max(7, int(np.ceil(np.sqrt(energy.n_solvent + 13))))
    grid = (np.arange(n_side) - (n_side - 1) / 2) * (2 * energy.box_half / n_side)
    lattice = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    dimer = np.array([[-0.5 * distance, 0.0], [0.5 * distance, 0.0]])
    clearance = np.linalg.norm(lattice[:, None] - dimer[None], axis=-1).min(1)
    solvent = lattice[np.sort(np.argsort(-clearance, kind="stable")[: energy.n_solvent])]
    xy = np.concatenate([dimer, solvent])
    if not relax:
        return xy
    context = openmm.Context(particle_dimer_system(energy), openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(in_plane(xy))
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    relaxed = positions_nm(context.getState(getPositions=True).getPositions(asNumpy=True))
    del context
    return relaxed[:, :2]
