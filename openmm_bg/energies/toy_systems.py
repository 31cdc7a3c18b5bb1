"""The analytic toy energies as one-particle OpenMM Systems.

Each System holds one particle whose potential, in kJ/mol, is

.. math:: U(x, y, z) = kT \\,[\\, u(x, y) + z^2 / 2 \\,]

with ``u`` the reduced toy energy of :mod:`openmm_bg.energies.toys`, ``x, y, z``
the particle's coordinates in nm and ``kT`` taken at the ``temperature`` the
System is built for.  So ``OpenMMEnergy(system, temperature)`` on positions
``(x, y, 0)`` returns exactly ``u(x, y)``.  The harmonic ``z`` term keeps the
three-dimensional density normalisable, so MD and MCMC on the System are well
posed, and it is independent of ``(x, y)``: z is a standard normal at
``temperature`` and the ``(x, y)`` marginal is the toy's density.

Global parameter names carry a prefix (``dw_``, ``mb_``) so they cannot clash
with integrator variables such as openmmtools' ``a``, ``b`` and ``kT``.
"""

from __future__ import annotations


import openmm

from .._validation import ensure_positive
from ..units import kt_kjmol
from .toys import DoubleWell, MuellerBrown

__all__ = ["double_well_system", "mueller_brown_system"]


def _one_particle_system(expression: str, parameters: dict[str, float], mass: float) -> openmm.System:
    mass = ensure_positive(mass, "mass", "amu")
    system = openmm.System()
    system.addParticle(mass)
    force = openmm.CustomExternalForce(expression)
    for name, value in parameters.items():
        force.addGlobalParameter(name, float(value))
    force.addParticle(0, [])
    system.addForce(force)
    return system


def double_well_system(energy: DoubleWell | None = None, temperature: float = 300.0, mass: float = 1.0) -> openmm.System:
    """The double well of :class:`~openmm_bg.energies.DoubleWell` as a one-particle OpenMM System.

    Parameters
    ----------
    energy : DoubleWell, optional
        Its coefficients ``a, b, c, d`` become the global parameters ``dw_a`` to
        ``dw_d``; default ``DoubleWell()``.
    temperature : float, K
        ``kT`` (global parameter ``dw_kT``, kJ/mol) converts the reduced energy to kJ/mol.
    mass : float, amu

    Returns
    -------
    openmm.System
        One particle with potential ``kT [u(x, y) + z^2/2]`` in kJ/mol, positions in nm.
    """
    energy = DoubleWell() if energy is None else energy
    if not isinstance(energy, DoubleWell):
        raise TypeError(f"energy must be a DoubleWell, got {type(energy).__name__}")
    expression = "dw_kT * (dw_a / 4 * x^4 - dw_b / 2 * x^2 + dw_c * x + dw_d / 2 * y^2 + z^2 / 2)"
    parameters = {"dw_kT": kt_kjmol(temperature), "dw_a": energy.a, "dw_b": energy.b, "dw_c": energy.c, "dw_d": energy.d}
    return _one_particle_system(expression, parameters, mass)


def mueller_brown_system(energy: MuellerBrown | None = None, temperature: float = 300.0, mass: float = 1.0) -> openmm.System:
    """The Mueller-Brown potential of :class:`~openmm_bg.energies.MuellerBrown` as a one-particle OpenMM System.

    Parameters
    ----------
    energy : MuellerBrown, optional
        Its ``beta`` becomes the global parameter ``mb_beta``; the four Gaussian
        terms use the class's fixed Mueller-Brown constants.  Default ``MuellerBrown()``.
    temperature : float, K
        ``kT`` (global parameter ``mb_kT``, kJ/mol) converts the reduced energy to kJ/mol.
    mass : float, amu

    Returns
    -------
    openmm.System
        One particle with potential ``kT [u(x, y) + z^2/2]`` in kJ/mol, positions in nm.
    """
    energy = MuellerBrown() if energy is None else energy
    if not isinstance(energy, MuellerBrown):
        raise TypeError(f"energy must be a MuellerBrown, got {type(energy).__name__}")
    terms = []
    for A, a, b, c, x0, y0 in zip(energy.A, energy.a, energy.b, energy.c, energy.x0, energy.y0):
        dx, dy = f"(x - ({x0!r}))", f"(y - ({y0!r}))"
        terms.append(f"({A!r}) * exp(({a!r}) * {dx}^2 + ({b!r}) * {dx} * {dy} + ({c!r}) * {dy}^2)")
    expression = f"mb_kT * (mb_beta * ({' + '.join(terms)}) + z^2 / 2)"
    parameters = {"mb_kT": kt_kjmol(temperature), "mb_beta": energy.beta}
    return _one_particle_system(expression, parameters, mass)
