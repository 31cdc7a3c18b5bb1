"""The user's own molecule: a :class:`MolecularSystem` from PDB, prmtop or serialized System files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mdtraj as md
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..units import positions_nm
from .systems import CollectiveVariable, MolecularSystem, get_system, list_systems

__all__ = ["load_system", "resolve_system"]


def load_system(
    structure: str | os.PathLike,
    system: str | os.PathLike | openmm.System | None = None,
    *,
    forcefield: tuple[str, ...] | list[str] | None = None,
    temperature: float = 300.0,
    platform: str = "Reference",
    name: str | None = None,
    collective_variables: dict[str, CollectiveVariable] | None = None,
    states: dict[str, CollectiveVariable] | None = None,
) -> MolecularSystem:
    """Build a :class:`MolecularSystem` from the user's own files.

    Three ways, by what is given:

    * ``system`` is a serialized System (``.xml``) or an ``openmm.System``, and
      ``structure`` a PDB with the topology and positions;
    * ``system`` is an Amber ``.prmtop`` (no constraints are added), and ``structure``
      a PDB or an ``.inpcrd``/``.rst7`` with the positions;
    * ``system`` is None, ``structure`` a PDB, and ``forcefield`` names OpenMM
      force-field files (e.g. ``("amber14-all.xml", "implicit/gbn2.xml")``); built
      without cutoff and without constraints.

    Parameters
    ----------
    structure : path
    system : path or openmm.System, optional
    forcefield : sequence of str, optional
    temperature : float, K
    platform : str
        OpenMM platform name for this system.
    name : str, optional
        Defaults to the stem of ``structure``.
    collective_variables, states : dict, optional
        As in :class:`MolecularSystem`.

    Returns
    -------
    MolecularSystem
    """
    structure = Path(structure)
    if not structure.exists():
        raise OSError(f"structure file {structure} does not exist")
    openmm.Platform.getPlatformByName(platform)  # fails early with OpenMM's list of platforms
    box = None
    if isinstance(system, (str, os.PathLike)) and Path(system).suffix.lower() in (".prmtop", ".parm7", ".top"):
        prmtop = app.AmberPrmtopFile(str(system))
        omm_top = prmtop.topology
        if structure.suffix.lower() == ".pdb":
            positions = app.PDBFile(str(structure)).getPositions(asNumpy=True)
        else:
            inpcrd = app.AmberInpcrdFile(str(structure))
            positions = inpcrd.getPositions(asNumpy=True)
        nonbonded = app.CutoffPeriodic if omm_top.getPeriodicBoxVectors() is not None else app.NoCutoff
        omm_system = prmtop.createSystem(nonbondedMethod=nonbonded, constraints=None)
    else:
        if structure.suffix.lower() not in (".pdb", ".cif", ".pdbx"):
            raise ValueError(f"structure must be a PDB or PDBx/mmCIF file when no prmtop is given, got {structure.name}")
        pdb = app.PDBFile(str(structure)) if structure.suffix.lower() == ".pdb" else app.PDBxFile(str(structure))
        omm_top, positions = pdb.topology, pdb.getPositions(asNumpy=True)
        if system is None:
            if not forcefield:
                raise ValueError("give either a System (XML file, prmtop or openmm.System) or force-field file names")
            nonbonded = app.PME if omm_top.getPeriodicBoxVectors() is not None else app.NoCutoff
            omm_system = app.ForceField(*forcefield).createSystem(omm_top, nonbondedMethod=nonbonded, constraints=None)
        elif isinstance(system, openmm.System):
            omm_system = system
        else:
            path = Path(system)
            if path.suffix.lower() != ".xml":
                raise ValueError(f"system must be a serialized System (.xml) or an Amber .prmtop, got {path.name}")
            omm_system = openmm.XmlSerializer.deserialize(path.read_text())
            if not isinstance(omm_system, openmm.System):
                raise TypeError(f"{path} holds a serialized {type(omm_system).__name__}, expected a System")
    if omm_system.usesPeriodicBoundaryConditions():
        box = np.array([v.value_in_unit(unit.nanometer) for v in omm_system.getDefaultPeriodicBoxVectors()])
    top = md.Topology.from_openmm(omm_top)
    if top.n_atoms != omm_system.getNumParticles():
        raise ValueError(
            f"the topology from {structure.name} has {top.n_atoms} atoms but the System has "
            f"{omm_system.getNumParticles()} particles"
        )
    return MolecularSystem(
        name=name or structure.stem,
        system=omm_system,
        topology=top,
        openmm_topology=omm_top,
        positions=positions_nm(positions),
        temperature=float(temperature),
        platform=platform,
        collective_variables=dict(collective_variables or {}),
        states=dict(states or {}),
        description=f"user system from {structure.name}",
        box_vectors=box,
    )


def resolve_system(
    metadata: dict[str, Any] | None = None,
    system: str | None = None,
    structure: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
) -> MolecularSystem:
    """The system a command works on: a registered name, the user's own files, or the one ``metadata`` names.

    Parameters
    ----------
    metadata : dict, optional
        A checkpoint's metadata; its ``"system"``, if a registered name, is the fallback.
    system : str, optional
        A registered system (:func:`openmm_bg.molecules.systems.list_systems`).
    structure, system_file : path, optional
        The user's own files (see :func:`load_system`); ``system_file`` goes with ``structure``.
    source : path, optional
        The file ``metadata`` came from, named in the error when nothing names a system.

    Returns
    -------
    MolecularSystem
    """
    if system and structure:
        raise ValueError("give either a system name or --structure, not both")
    if system:
        return get_system(system)
    if structure is not None:
        if not Path(structure).is_file():
            raise FileNotFoundError(f"structure file not found: {structure}")
        if system_file is not None and not Path(system_file).is_file():
            raise FileNotFoundError(f"system file not found: {system_file}")
        return load_system(structure, system_file)
    if system_file is not None:
        raise ValueError("--system-file goes with --structure")
    name = (metadata or {}).get("system")
    if isinstance(name, str) and name in list_systems():
        return get_system(name)
    choices = f"(one of {', '.join(list_systems())}) or --structure with your own files"
    if source is None:
        raise ValueError(f"give a system name {choices}")
    named = f"names the system {name!r}, which is not a registered system" if name else "names no system"
    raise ValueError(f"{source} {named}; pass --system NAME {choices}")
