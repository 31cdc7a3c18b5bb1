"""The choices that make a Hamiltonian from force-field files, checked and described in one line.

:func:`openmm_bg.molecules.load_system` builds a System from Amber, GROMACS, CHARMM or
OpenMM force-field files; the options here are the ones OpenMM's ``createSystem`` needs and
that change the physics: the implicit-solvent model, the constraints and the cutoff.
Each is chosen by name, and an unknown name gets one ``ValueError`` that lists the
valid ones.  This module imports OpenMM only when a System is built or described, so
that the command line can list the names cheaply.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

__all__ = [
    "IMPLICIT_SOLVENT_MODELS",
    "CONSTRAINTS",
    "IMPLICIT_SOLVENT_FILES",
    "check_choice",
    "openmm_constant",
    "gb_radius_set",
    "warn_if_made_for_implicit_solvent",
    "describe_hamiltonian",
]

#: ``implicit_solvent`` names: ``"none"`` (no implicit solvent, chosen explicitly) and the
#: generalized-Born models of ``openmm.app`` (the same names as there).
IMPLICIT_SOLVENT_MODELS = ("none", "OBC1", "OBC2", "GBn", "GBn2", "HCT")

#: ``constraints`` names: ``"none"`` and the constraint sets of ``openmm.app``.
CONSTRAINTS = ("none", "HBonds", "AllBonds", "HAngles")

#: The OpenMM force-field file that adds each implicit-solvent model to an Amber force field.
IMPLICIT_SOLVENT_FILES = {
    "OBC1": "implicit/obc1.xml",
    "OBC2": "implicit/obc2.xml",
    "GBn": "implicit/gbn.xml",
    "GBn2": "implicit/gbn2.xml",
    "HCT": "implicit/hct.xml",
}

# The GB model each non-default Amber radius set was made for (Amber manual, igb values);
# tleap's default, mbondi, is in every prmtop that did not choose one, so it says nothing.
_RADIUS_SET_MODELS = {"mbondi2": "OBC1 or OBC2", "mbondi3": "GBn2", "bondi": "GBn"}


def check_choice(value: str | None, choices: tuple[str, ...], what: str) -> str | None:
    """``value`` spelled as in ``choices`` (case does not matter), or None for None.

    Parameters
    ----------
    value : str or None
    choices : tuple of str
    what : str
        The option's name, for the message, e.g. ``"implicit_solvent"``.

    Returns
    -------
    str or None
        The canonical spelling.

    Raises
    ------
    ValueError
        If ``value`` is not one of ``choices``; the message lists them.
    """
    if value is None:
        return None
    by_lower = {choice.lower(): choice for choice in choices}
    if not isinstance(value, str) or value.lower() not in by_lower:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return by_lower[value.lower()]


def openmm_constant(name: str | None):
    """The ``openmm.app`` constant for a canonical solvent or constraint name; None for None or ``"none"``."""
    import openmm.app as app

    return None if name in (None, "none") else getattr(app, name)


def gb_radius_set(prmtop) -> str | None:
    """The GB radius set an Amber prmtop records (its ``RADIUS_SET`` flag), e.g. ``"mbondi2"``.

    Parameters
    ----------
    prmtop : openmm.app.AmberPrmtopFile

    Returns
    -------
    str or None
        The short name in the flag's last parentheses (the whole flag if it has none), or None
        when the prmtop has no ``RADIUS_SET``.
    """
    raw = prmtop._prmtop._raw_data.get("RADIUS_SET")
    if not raw:
        return None
    text = " ".join(raw).strip()
    short = re.findall(r"\(([^)]+)\)", text)  # the last: "H(N)-modified Bondi radii (mbondi2)"
    return short[-1].strip() if short else text


def warn_if_made_for_implicit_solvent(prmtop, path: Path) -> None:
    """Warn when a non-periodic prmtop's radius set names an implicit-solvent model.

    Called when no ``implicit_solvent`` was chosen: the System is then built in vacuum,
    which such a prmtop was not made for.
    """
    radius_set = gb_radius_set(prmtop)
    if radius_set not in _RADIUS_SET_MODELS or prmtop.topology.getPeriodicBoxVectors() is not None:
        return
    warnings.warn(
        f"{path.name} was made for implicit solvent (GB radius set {radius_set}, for "
        f"{_RADIUS_SET_MODELS[radius_set]}) but is built in vacuum because no implicit solvent was chosen; "
        f"choose one (implicit_solvent / --implicit-solvent: {', '.join(IMPLICIT_SOLVENT_MODELS[1:])}), "
        f"or 'none' to keep vacuum",
        UserWarning,
        stacklevel=5,  # the caller of load_system (through _built and _amber)
    )


def _solvent_in_system(system) -> str:
    """What the System itself says about its solvent: GB forces, a periodic box, or neither."""
    import openmm

    gb = sorted({type(force).__name__ for force in system.getForces() if isinstance(force, (openmm.GBSAOBCForce, openmm.CustomGBForce))})
    if gb:
        return f"implicit solvent ({', '.join(gb)} in the System)"
    if system.usesPeriodicBoundaryConditions():
        return "periodic box (explicit solvent or crystal)"
    return "vacuum"


def _nonbonded(system) -> str:
    """The NonbondedForce's method and cutoff, e.g. ``"PME, cutoff 1 nm"``."""
    import openmm
    import openmm.unit as unit

    names = {
        openmm.NonbondedForce.NoCutoff: "NoCutoff",
        openmm.NonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
        openmm.NonbondedForce.CutoffPeriodic: "CutoffPeriodic",
        openmm.NonbondedForce.Ewald: "Ewald",
        openmm.NonbondedForce.PME: "PME",
        openmm.NonbondedForce.LJPME: "LJPME",
    }
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            method = names.get(force.getNonbondedMethod(), str(force.getNonbondedMethod()))
            if method == "NoCutoff":
                return method
            return f"{method}, cutoff {force.getCutoffDistance().value_in_unit(unit.nanometer):g} nm"
    return "no NonbondedForce"


def describe_hamiltonian(source: str, system, *, solvent: str | None = None, constraints: str | None = None) -> str:
    """One line that states the Hamiltonian: force-field source, solvent, constraints, nonbonded, particles.

    Parameters
    ----------
    source : str
        Where the force field came from, e.g. ``"Amber prmtop ala2.prmtop"``.
    system : openmm.System
        The built System; the constraint count, nonbonded method and particle count are read from it.
    solvent : str, optional
        The chosen implicit-solvent model or force-field file; None: read from the System.
    constraints : str, optional
        The chosen constraint set; None: the System was not built here.

    Returns
    -------
    str
    """
    solvent_text = f"implicit solvent {solvent}" if solvent not in (None, "none") else _solvent_in_system(system)
    chosen = "" if constraints is None else f"{constraints}, "
    return (
        f"{source}; {solvent_text}; constraints {chosen}{system.getNumConstraints()} in the System; "
        f"nonbonded {_nonbonded(system)}; {system.getNumParticles()} particles"
    )
