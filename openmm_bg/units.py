"""The one place where :mod:`openmm.unit` meets plain numbers.

Everything else in :mod:`openmm_bg` works in plain floats and arrays: positions in
nm, energies reduced (in kT), temperatures in kelvin.  The helpers here convert
at the OpenMM edge and nowhere else.

OpenMM always reports State quantities in its MD units (nm, kJ/mol, kJ/mol/nm);
:func:`read_energy_forces` checks the unit and skips the generic conversion on
that fast path, because on small systems the conversion costs as much as the
force evaluation itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import openmm
from openmm import unit

__all__ = [
    "MOLAR_GAS_CONSTANT",
    "as_kelvin",
    "kt_kjmol",
    "kt_kcalmol",
    "positions_nm",
    "box_vectors_nm",
    "read_energy_forces",
]

_KJ_PER_MOL = unit.kilojoule_per_mole
_KJ_PER_MOL_NM = unit.kilojoule_per_mole / unit.nanometer

#: molar gas constant R = k_B N_A in kJ/(mol K); kT = R T, as in openmmtools' ThermodynamicState
MOLAR_GAS_CONSTANT: float = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def as_kelvin(temperature: float | unit.Quantity) -> float:
    """A temperature as a plain float in kelvin.

    Parameters
    ----------
    temperature : float or openmm.unit.Quantity
        A positive number of kelvin, or a Quantity with temperature units.

    Returns
    -------
    float, K

    Raises
    ------
    TypeError
        If ``temperature`` is neither a real number nor a temperature Quantity.
    ValueError
        If it is not finite and positive.
    """
    if unit.is_quantity(temperature):
        if not temperature.unit.is_compatible(unit.kelvin):
            raise TypeError(f"temperature must be in kelvin (or a float of kelvin), got a Quantity in {temperature.unit}")
        value = temperature.value_in_unit(unit.kelvin)
    else:
        value = temperature
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"temperature must be a float of kelvin or an openmm Quantity, got {type(temperature).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be finite and positive in kelvin, got {value}")
    return value


def kt_kjmol(temperature: float | unit.Quantity) -> float:
    """Thermal energy kT in kJ/mol at ``temperature``.

    Parameters
    ----------
    temperature : float (K) or openmm.unit.Quantity

    Returns
    -------
    float, kJ/mol
    """
    return MOLAR_GAS_CONSTANT * as_kelvin(temperature)


def kt_kcalmol(temperature: float | unit.Quantity) -> float:
    """Thermal energy kT in kcal/mol at ``temperature`` (float in K, or a Quantity)."""
    return kt_kjmol(temperature) / 4.184


def positions_nm(positions: Any) -> np.ndarray:
    """Positions as a float64 array in nm.

    Parameters
    ----------
    positions : openmm.unit.Quantity or array_like, shape (n_atoms, 3) or (batch, n_atoms, 3)
        A Quantity with length units (a list of ``Vec3`` included), or plain numbers in nm.

    Returns
    -------
    ndarray, float64, same shape, nm
        A view of ``positions`` when it already is a float64 array.
    """
    if unit.is_quantity(positions):
        if not positions.unit.is_compatible(unit.nanometer):
            raise TypeError(f"positions must have length units, got {positions.unit}")
        positions = positions.value_in_unit(unit.nanometer)
    return np.asarray(positions, dtype=np.float64)


def box_vectors_nm(system: openmm.System) -> np.ndarray | None:
    """The default periodic box vectors of ``system`` in nm, or ``None`` if it is not periodic.

    Parameters
    ----------
    system : openmm.System

    Returns
    -------
    ndarray, shape (3, 3), float64, nm (rows are the box vectors a, b, c), or None
    """
    if not system.usesPeriodicBoundaryConditions():
        return None
    return np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()], dtype=np.float64)


def read_energy_forces(state: openmm.State, forces_out: np.ndarray) -> float:
    """Read the potential energy and forces of an OpenMM State.

    Parameters
    ----------
    state : openmm.State
        Created with ``getEnergy=True, getForces=True``.
    forces_out : ndarray, shape (n_atoms, 3), float64
        Receives the forces in kJ/mol/nm.

    Returns
    -------
    float
        Potential energy in kJ/mol.
    """
    energy = state.getPotentialEnergy()
    forces = state.getForces(asNumpy=True)
    # OpenMM reports MD units; the generic conversion is kept for any other unit.
    forces_out[...] = forces._value if forces.unit == _KJ_PER_MOL_NM else forces.value_in_unit(_KJ_PER_MOL_NM)
    return energy._value if energy.unit == _KJ_PER_MOL else energy.value_in_unit(_KJ_PER_MOL)
