"""Replica exchange along a scaled flattening bias on one torsion (Hamiltonian replica exchange).

A torsion such as alanine dipeptide's phi crosses its barriers rarely, at any temperature
a replica ladder can afford.  Here every replica stays at one temperature and feels
``s * V(theta)``, where ``V = -F`` is minus an estimate of the torsion's free-energy
profile (a Fourier series, so smooth and periodic) and the scale ``s`` runs from 0 (the
unbiased state) to 1 (the torsion's profile roughly flat).  The top replica crosses the
barriers freely, and swaps carry its crossings down to the unbiased state.  Every replica
runs Metropolized dynamics (GHMC) and swaps are Metropolis moves, so the chain samples
each state exactly; MBAR over all states gives unbiased-state averages whose only
approximation is statistical.  The profile only sets the efficiency: a poor one slows
the mixing but biases nothing.

It works where the biased torsions are the only slow coordinates (a four-atom chain with
10 kT torsion barriers, in the tests).  On alanine dipeptide in vacuum it mixed worse than
plain GHMC parallel tempering: with a bias on phi alone the top state rarely entered the
phi > 0 basin (the barriers are crossed only in narrow psi channels), and with a bias on
(phi, psi) from the bundled tempering samples, four repeats of 3500 iterations
(``scripts/run_ala2_bias_exchange.py``, then ``scripts/analyze_ala2_bias_exchange.py``) gave
dF = 3.10, 5.56, 4.49 and 6.78 kT (standard error 0.78 kT, five times the block
bootstrap's), where GHMC parallel tempering's four repeats of 5300 iterations, at about
the same cost per iteration, spread over 3.97-4.98 kT: the flattened top state still
diffuses slowly over the whole (phi, psi) torus.

This is the Hamiltonian-replica-exchange form of a static flattening bias, as in
umbrella sampling with a single broad window (Torrie and Valleau, J. Comput. Phys. 23,
187 (1977)) and replica exchange along a Hamiltonian parameter (Sugita, Kitao and Okamoto,
J. Chem. Phys. 113, 6042 (2000); Fukunishi, Watanabe and Takada, J. Chem. Phys. 116,
9058 (2002)).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import openmm
import openmm.unit as unit
from openmmtools.states import GlobalParameterState

from ..units import kt_kjmol
from .tempering import _run_exchange

__all__ = [
    "BIAS_PARAMETER",
    "BiasScaleState",
    "fourier_series_fit",
    "evaluate_fourier_series",
    "torsion_flattening_force",
    "dihedral_pair_flattening_force",
    "weighted_dihedral_surface",
    "run_bias_exchange",
    "bias_reduced_potentials",
    "split_bias_energies",
]

#: the global parameter that scales the bias, 0 (off) to 1 (full)
BIAS_PARAMETER = "bias_scale"


class BiasScaleState(GlobalParameterState):
    """openmmtools composable state setting the bias scale ``bias_scale`` of a flattening bias."""

    bias_scale = GlobalParameterState.GlobalParameter(BIAS_PARAMETER, standard_value=1.0)


def fourier_series_fit(angles: np.ndarray, values: np.ndarray, n_terms: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares periodic fit ``c0 + sum_n a_n cos(n x) + b_n sin(n x)``, n = 1..n_terms.

    Parameters
    ----------
    angles : ndarray, shape (m,), radians
    values : ndarray, shape (m,)
    n_terms : int
        Harmonics; needs ``m >= 2 n_terms + 1`` finite points.
    weights : ndarray, shape (m,), optional
        Least-squares weights (e.g. inverse variances).

    Returns
    -------
    ndarray, shape (2 n_terms + 1,)
        ``[c0, a_1, b_1, ..., a_n, b_n]``.
    """
    angles = np.asarray(angles, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if angles.ndim != 1 or angles.shape != values.shape:
        raise ValueError(f"angles and values must be 1-D of equal length, got {angles.shape} and {values.shape}")
    if not (np.all(np.isfinite(angles)) and np.all(np.isfinite(values))):
        raise ValueError("angles and values must be finite")
    n_terms = int(n_terms)
    if n_terms < 1 or len(angles) < 2 * n_terms + 1:
        raise ValueError(f"need at least {2 * n_terms + 1} points for {n_terms} harmonics, got {len(angles)}")
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != values.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite, non-negative and one per point")
    design = _design(angles, n_terms)
    sw = np.sqrt(w)
    coefficients, *_ = np.linalg.lstsq(design * sw[:, None], values * sw, rcond=None)
    return coefficients


def _design(angles: np.ndarray, n_terms: int) -> np.ndarray:
    columns = [np.ones_like(angles)]
    for n in range(1, n_terms + 1):
        columns += [np.cos(n * angles), np.sin(n * angles)]
    return np.stack(columns, axis=1)


def evaluate_fourier_series(coefficients: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``c0 + sum_n a_n cos(n x) + b_n sin(n x)`` at ``angles`` (the inverse of :func:`fourier_series_fit`)."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if coefficients.ndim != 1 or len(coefficients) % 2 != 1:
        raise ValueError(f"coefficients must be [c0, a1, b1, ..., an, bn], got shape {coefficients.shape}")
    angles = np.asarray(angles, dtype=np.float64)
    n_terms = (len(coefficients) - 1) // 2
    return (_design(angles.reshape(-1), n_terms) @ coefficients).reshape(angles.shape)


def torsion_flattening_force(
    atoms: Sequence[int],
    angles: np.ndarray,
    free_energy_kT: np.ndarray,
    temperature: float,
    *,
    n_terms: int = 8,
    fraction: float = 1.0,
) -> tuple[openmm.CustomTorsionForce, np.ndarray]:
    """A bias ``bias_scale * V(theta)`` on one torsion that flattens its free-energy profile.

    ``V = -fraction * F_fit``, where ``F_fit`` is a Fourier series fitted to the profile
    and shifted so that ``V`` is 0 at the profile's minimum and at most 0 elsewhere.

    Parameters
    ----------
    atoms : four ints
        The torsion's atoms (OpenMM's convention; e.g. phi = C-N-CA-C).
    angles : ndarray, shape (m,), radians
        Bin centres of the profile.
    free_energy_kT : ndarray, shape (m,), kT
        The torsion's free-energy profile at ``temperature`` (any additive constant).
    temperature : float, K
    n_terms : int
        Fourier harmonics (8 resolves ala2's phi profile to about 0.2 kT).
    fraction : float in (0, 1]
        How much of the profile to flatten at ``bias_scale = 1``.

    Returns
    -------
    force : openmm.CustomTorsionForce
        With global parameter ``bias_scale`` (default 1).
    coefficients : ndarray, shape (2 n_terms + 1,), kJ/mol
        The bias ``V`` as :func:`evaluate_fourier_series` coefficients.
    """
    atoms = [int(a) for a in atoms]
    if len(atoms) != 4 or len(set(atoms)) != 4:
        raise ValueError(f"a torsion needs four distinct atoms, got {atoms}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    free_energy_kT = np.asarray(free_energy_kT, dtype=np.float64)
    coefficients = -float(fraction) * kt_kjmol(temperature) * fourier_series_fit(angles, free_energy_kT, n_terms)
    grid = np.linspace(-np.pi, np.pi, 3601)
    coefficients[0] -= evaluate_fourier_series(coefficients, grid).max()
    terms = [repr(float(coefficients[0]))]
    for n in range(1, n_terms + 1):
        a, b = float(coefficients[2 * n - 1]), float(coefficients[2 * n])
        terms.append(f"({a!r})*cos({n}*theta)")
        terms.append(f"({b!r})*sin({n}*theta)")
    force = openmm.CustomTorsionForce(f"{BIAS_PARAMETER}*({' + '.join(terms)})")
    force.addGlobalParameter(BIAS_PARAMETER, 1.0)
    force.addTorsion(*atoms, [])
    force.setName("TorsionFlatteningBias")
    return force, coefficients


def dihedral_pair_flattening_force(
    phi_atoms: Sequence[int],
    psi_atoms: Sequence[int],
    free_energy_kT: np.ndarray,
    temperature: float,
    *,
    fraction: float = 1.0,
    cap_kT: float | None = None,
) -> tuple[openmm.CustomCVForce, np.ndarray]:
    """A bias ``bias_scale * V(phi, psi)`` on two torsions that flattens their joint free-energy surface.

    One torsion alone can leave a hidden slow coordinate: alanine dipeptide's phi barriers
    are crossed only in narrow psi channels, so flattening phi alone mixes slowly.
    ``V = -fraction * kT * (F - min F)``, F capped at ``cap_kT`` above its minimum, is a
    periodic bicubic spline (OpenMM ``Continuous2DFunction``) through the grid values.

    Parameters
    ----------
    phi_atoms, psi_atoms : four ints each
    free_energy_kT : ndarray, shape (n, n), kT
        ``F[i, j]`` at ``phi = -pi + (i + 1/2) 2 pi / n``, ``psi = -pi + (j + 1/2) 2 pi / n``
        (the centres of an n x n histogram over [-pi, pi)^2); finite, any additive constant.
    temperature : float, K
    fraction : float in (0, 1]
    cap_kT : float, optional
        Largest F above the minimum that is flattened (rarely visited cells of an estimated
        surface are noisy; capping keeps the bias from overshooting there).

    Returns
    -------
    force : openmm.CustomCVForce
        CVs ``phi`` and ``psi`` (CustomTorsionForce), global parameter ``bias_scale`` (default 1).
    bias_kjmol : ndarray, shape (n, n), kJ/mol
        V at the grid nodes (all <= 0, max 0).
    """
    phi_atoms, psi_atoms = [int(a) for a in phi_atoms], [int(a) for a in psi_atoms]
    for name, atoms in (("phi_atoms", phi_atoms), ("psi_atoms", psi_atoms)):
        if len(atoms) != 4 or len(set(atoms)) != 4:
            raise ValueError(f"{name}: a torsion needs four distinct atoms, got {atoms}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    F = np.asarray(free_energy_kT, dtype=np.float64)
    if F.ndim != 2 or F.shape[0] != F.shape[1] or F.shape[0] < 4:
        raise ValueError(f"free_energy_kT must be a square grid of at least 4 x 4, got shape {F.shape}")
    if not np.all(np.isfinite(F)):
        raise ValueError("free_energy_kT must be finite (cap or fill empty cells before building the bias)")
    F = F - F.min()
    if cap_kT is not None:
        if not cap_kT > 0:
            raise ValueError(f"cap_kT must be positive, got {cap_kT}")
        F = np.minimum(F, float(cap_kT))
    bias = -float(fraction) * kt_kjmol(temperature) * F
    n = F.shape[0]
    h = 2.0 * np.pi / n
    # periodic spline: nodes at the cell centres, the first row/column repeated at the end
    wrapped = np.empty((n + 1, n + 1))
    wrapped[:n, :n] = bias
    wrapped[n, :n] = bias[0]
    wrapped[:, n] = wrapped[:, 0]
    # Continuous2DFunction takes values[i + (n + 1) * j] for x node i, y node j
    table = openmm.Continuous2DFunction(n + 1, n + 1, wrapped.T.reshape(-1).tolist(),
                                        -np.pi + h / 2, np.pi + h / 2, -np.pi + h / 2, np.pi + h / 2, True)
    force = openmm.CustomCVForce(f"{BIAS_PARAMETER}*table(phi, psi)")
    force.addGlobalParameter(BIAS_PARAMETER, 1.0)
    for name, atoms in (("phi", phi_atoms), ("psi", psi_atoms)):
        torsion = openmm.CustomTorsionForce("theta")
        torsion.addTorsion(*atoms, [])
        force.addCollectiveVariable(name, torsion)
    force.addTabulatedFunction("table", table)
    force.setName("DihedralPairFlatteningBias")
    return force, bias


def weighted_dihedral_surface(
    phi: np.ndarray, psi: np.ndarray, weights: np.ndarray, *, n_bins: int = 36, smoothing_bins: float = 1.0,
    floor: float = 1e-12,
) -> np.ndarray:
    """A smoothed free-energy surface ``F(phi, psi)`` in kT from weighted samples.

    Parameters
    ----------
    phi, psi : ndarray, shape (m,), radians
    weights : ndarray, shape (m,)
        Non-negative sample weights (e.g. MBAR weights in the target state).
    n_bins : int
        Cells per angle over [-pi, pi).
    smoothing_bins : float
        Width of the periodic Gaussian smoothing, in cells (0: none).
    floor : float
        Probability floor of empty cells (relative to the total), so that F stays finite.

    Returns
    -------
    ndarray, shape (n_bins, n_bins), kT
        ``F - min F``, in the layout :func:`dihedral_pair_flattening_force` takes.
    """
    from scipy import ndimage

    phi, psi, weights = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (phi, psi, weights))
    if not (phi.shape == psi.shape == weights.shape) or len(phi) == 0:
        raise ValueError(f"phi, psi and weights must be non-empty and of one length, got {phi.shape}, {psi.shape}, {weights.shape}")
    if not (np.all(np.isfinite(phi)) and np.all(np.isfinite(psi)) and np.all(np.isfinite(weights))) or np.any(weights < 0):
        raise ValueError("phi, psi and weights must be finite, and weights non-negative")
    if weights.sum() <= 0:
        raise ValueError("weights sum to zero")
    wrap = lambda a: (a + np.pi) % (2.0 * np.pi) - np.pi  # noqa: E731
    H, _, _ = np.histogram2d(wrap(phi), wrap(psi), bins=int(n_bins), range=[[-np.pi, np.pi], [-np.pi, np.pi]], weights=weights)
    H /= H.sum()
    if smoothing_bins > 0:
        H = ndimage.gaussian_filter(H, sigma=float(smoothing_bins), mode="wrap")
    F = -np.log(np.maximum(H, float(floor)))
    return F - F.min()


def run_bias_exchange(
    system: openmm.System,
    positions: np.ndarray,
    bias: openmm.Force,
    scales: Sequence[float],
    temperature: float,
    storage: str | os.PathLike,
    n_iterations: int,
    *,
    steps_per_iteration: int = 250,
    timestep: float = 0.002,
    collision_rate: float = 10.0,
    platform: str = "Reference",
    checkpoint_interval: int = 1,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    chunk: int = 100,
    integrator: str = "ghmc",
) -> "os.PathLike":
    """Run (or resume) replica exchange over bias scales ``scales`` at one temperature.

    Same storage, seeding and resumption as
    :func:`~openmm_bg.simulation.tempering.run_parallel_tempering`; read it back with
    :func:`~openmm_bg.simulation.tempering.read_parallel_tempering`, whose
    ``bias_scales`` then holds ``scales``.

    Parameters
    ----------
    system : openmm.System
        The unbiased system (not modified); ``bias`` is added to a copy.
    positions : ndarray, shape (n_atoms, 3), nm
    bias : openmm.Force
        A force whose energy is scaled by the global parameter ``bias_scale``
        (:func:`torsion_flattening_force`).
    scales : sequence of float
        Strictly increasing values of ``bias_scale``; the first is normally 0 (the unbiased state).
    temperature : float, K
    storage : path
    n_iterations : int
    steps_per_iteration, timestep, collision_rate, platform, checkpoint_interval, seed, resume, progress, chunk
        As in :func:`~openmm_bg.simulation.tempering.run_parallel_tempering`.
    integrator : str
        ``"ghmc"`` (default: exact) or ``"langevin"``.

    Returns
    -------
    Path
        ``storage``.
    """
    from openmmtools import states

    scales = np.asarray(scales, dtype=np.float64)
    if scales.ndim != 1 or len(scales) < 2 or np.any(np.diff(scales) <= 0) or not np.all(np.isfinite(scales)):
        raise ValueError(f"scales must be at least two strictly increasing finite values, got {scales.tolist()}")
    if not (isinstance(bias, openmm.Force) and hasattr(bias, "getNumGlobalParameters")):
        raise TypeError(f"bias must be an OpenMM custom force with a global parameter {BIAS_PARAMETER!r}, got {type(bias).__name__}")
    names = {bias.getGlobalParameterName(i) for i in range(bias.getNumGlobalParameters())}
    if BIAS_PARAMETER not in names:
        raise ValueError(f"bias has no global parameter {BIAS_PARAMETER!r} (it has {sorted(names) or 'none'})")
    temperature = float(temperature)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (K), got {temperature}")
    biased = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    biased.addForce(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(bias)))

    def make_states():
        base = states.ThermodynamicState(biased, temperature * unit.kelvin)
        return [states.CompoundThermodynamicState(base, [BiasScaleState(bias_scale=float(s))]) for s in scales]

    def check_stored(stored_states):
        stored = np.array([float(getattr(s, BIAS_PARAMETER, np.nan)) for s in stored_states])
        stored_t = np.array([s.temperature.value_in_unit(unit.kelvin) for s in stored_states])
        if stored.shape != scales.shape or not np.allclose(stored, scales) or not np.allclose(stored_t, temperature):
            raise ValueError(f"{storage} was run at bias scales {stored.tolist()} and {stored_t.tolist()} K, "
                             f"not {scales.tolist()} at {temperature} K")

    return _run_exchange(
        make_states, check_stored, biased, positions, storage, n_iterations, steps_per_iteration=steps_per_iteration,
        timestep=timestep, collision_rate=collision_rate, platform=platform, checkpoint_interval=checkpoint_interval,
        seed=seed, resume=resume, progress=progress, chunk=chunk, integrator=integrator, desc="bias exchange",
    )


def bias_reduced_potentials(
    potential_energy: np.ndarray, bias_energy: np.ndarray, scales: Sequence[float], temperature: float
) -> np.ndarray:
    """Reduced potentials ``(U + s_k V) / kT`` of configurations in every bias state.

    A run can then be kept as two energies per sample (the unbiased ``U`` and the full bias
    ``V``) rather than a matrix over states.

    Parameters
    ----------
    potential_energy : ndarray, shape (...), kJ/mol
        Unbiased potential energy of each configuration.
    bias_energy : ndarray, shape (...), kJ/mol
        The bias at scale 1 of each configuration.
    scales : sequence of float, shape (n_states,)
    temperature : float, K

    Returns
    -------
    ndarray, shape (..., n_states), kT
    """
    potential_energy = np.asarray(potential_energy, dtype=np.float64)
    bias_energy = np.asarray(bias_energy, dtype=np.float64)
    if potential_energy.shape != bias_energy.shape:
        raise ValueError(f"potential_energy and bias_energy must have the same shape, got {potential_energy.shape} and {bias_energy.shape}")
    scales = np.asarray(scales, dtype=np.float64)
    return (potential_energy[..., None] + bias_energy[..., None] * scales) / kt_kjmol(temperature)


def split_bias_energies(
    reduced_potentials: np.ndarray, scales: Sequence[float], temperature: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """The unbiased energy ``U`` and bias ``V`` of samples, from their reduced potentials in every state.

    The inverse of :func:`bias_reduced_potentials`: a least-squares fit of
    ``u_k kT = U + s_k V`` over the states, with the largest misfit as a check that the
    stored matrix is what the scales say.

    Parameters
    ----------
    reduced_potentials : ndarray, shape (..., n_states), kT
    scales : sequence of float, shape (n_states,)
    temperature : float, K

    Returns
    -------
    U, V : ndarray, shape (...), kJ/mol
    misfit : float, kT
        Largest ``|u_k - (U + s_k V) / kT|``.
    """
    u = np.asarray(reduced_potentials, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    if u.shape[-1] != len(scales) or len(scales) < 2:
        raise ValueError(f"reduced_potentials must end with one entry per state ({len(scales)}), got shape {u.shape}")
    design = np.stack([np.ones_like(scales), scales], axis=1)
    kT = kt_kjmol(temperature)
    coefficients, *_ = np.linalg.lstsq(design, (u * kT).reshape(-1, len(scales)).T, rcond=None)
    U, V = (c.reshape(u.shape[:-1]) for c in coefficients)
    misfit = float(np.max(np.abs(bias_reduced_potentials(U, V, scales, temperature) - u))) if u.size else 0.0
    return U, V, misfit
