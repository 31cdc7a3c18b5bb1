"""The user's own molecule: a :class:`MolecularSystem` from Amber, GROMACS, CHARMM, PDB + force-field or serialized System files."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import mdtraj as md
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from .._validation import ensure_positive
from ..units import box_vectors_nm, positions_nm
from .hamiltonian import CONSTRAINTS, IMPLICIT_SOLVENT_MODELS, IMPLICIT_SOLVENT_FILES, check_choice, describe_hamiltonian, openmm_constant, warn_if_made_for_implicit_solvent
from .named_cvs import standard_collective_variables
from .platforms import AUTO, check_platform_name, select_platform
from .systems import CollectiveVariable, MolecularSystem, get_system, list_systems

__all__ = ["load_system", "resolve_system", "checkpoint_record", "checkpoint_metadata", "system_from_checkpoint_metadata", "check_same_molecule", "MOLECULE_KEY", "CHARMM_PARAMETER_SUFFIXES"]

#: key of the stored molecule in a checkpoint's metadata
MOLECULE_KEY = "molecule"

#: suffixes of the CHARMM parameter files ``forcefield`` names with a PSF (as ``openmm.app.CharmmParameterSet`` reads them)
CHARMM_PARAMETER_SUFFIXES = (".prm", ".par", ".rtf", ".top", ".str", ".inp")


def load_system(
    structure: str | os.PathLike,
    system: str | os.PathLike | openmm.System | None = None,
    *,
    forcefield: tuple[str, ...] | list[str] | None = None,
    implicit_solvent: str | None = None,
    constraints: str | None = None,
    nonbonded_cutoff: float | None = None,
    hydrogen_mass: float | None = None,
    temperature: float = 300.0,
    platform: str = AUTO,
    name: str | None = None,
    collective_variables: dict[str, CollectiveVariable] | None = None,
    states: dict[str, CollectiveVariable] | None = None,
) -> MolecularSystem:
    """Build a :class:`MolecularSystem` from the user's own files, with the Hamiltonian stated.

    Five ways, by what is given:

    * ``system`` an Amber prmtop (``.prmtop``, ``.parm7``, or ``.top`` starting with
      ``%VERSION``), ``structure`` an ``.inpcrd``/``.rst7``/``.crd`` or a PDB;
    * ``system`` a GROMACS topology (``.top``, self-contained or with its includes in
      OpenMM's default GROMACS folder), ``structure`` a ``.gro`` (or PDB);
    * ``system`` a CHARMM PSF (``.psf``), ``forcefield`` its parameter files
      (``.prm``/``.par``, ``.rtf``/``.top``, ``.str``, as
      ``openmm.app.CharmmParameterSet`` reads them), ``structure`` a CHARMM ``.crd`` or a
      PDB (whose CRYST1 record, if any, gives the periodic box);
    * ``system`` None, ``structure`` a PDB or PDBx/mmCIF, and ``forcefield`` OpenMM
      force-field files (e.g. ``("amber14-all.xml", "implicit/gbn2.xml")``);
    * ``system`` a serialized System (``.xml``) or an ``openmm.System``, and
      ``structure`` a PDB or PDBx/mmCIF with the topology and positions.  Such a System is
      already built: the options below must then stay None.

    The description (:attr:`MolecularSystem.description`) states the force-field
    source, the solvent, the constraints, the nonbonded method and the particle count.

    Parameters
    ----------
    structure : path
    system : path or openmm.System, optional
    forcefield : sequence of str, optional
        The force field the system file does not carry: OpenMM XML files with a PDB
        ``structure`` and no ``system``, or the CHARMM parameter files of a PSF.  Amber,
        GROMACS and serialized Systems carry their own and take none.
    implicit_solvent : {None, "none", "OBC1", "OBC2", "GBn", "GBn2", "HCT"}
        None (default): no implicit solvent, with a ``UserWarning`` when an Amber
        prmtop's GB radius set says it was made for one; ``"none"``: no implicit
        solvent, chosen.  With ``forcefield`` XML files, the model's ``implicit/*.xml``
        file is added; a CHARMM PSF passes it to ``CharmmPsfFile.createSystem`` (which
        sets the model's own radii); GROMACS topologies take none.
    constraints : {None, "none", "HBonds", "AllBonds", "HAngles"}
        None (default) is ``"none"``: every bond flexible (Amber and OpenMM force
        fields still keep water rigid).
    nonbonded_cutoff : float, nm, optional
        None (default): no cutoff for a non-periodic system, 1 nm for a periodic one.
        Non-periodic systems with a cutoff use ``CutoffNonPeriodic``; periodic ones
        always use PME.
    hydrogen_mass : float, Da, optional
        Hydrogen mass, the difference taken from the bonded heavy atom (OpenMM's
        ``hydrogenMass``); None (default) keeps the masses of the files.
    temperature : float, K
    platform : str
        ``"auto"`` (default): the fastest of the installed platforms among Reference,
        CPU, CUDA and OpenCL in a timing of a few energy-and-forces calls at
        ``structure``'s positions (:func:`openmm_bg.molecules.platforms.select_platform`;
        it takes well under a second for a small molecule, and the choice is logged at
        INFO).  Or a platform's name, taken as given.
    name : str, optional
        Defaults to the stem of ``structure``.
    collective_variables, states : dict, optional
        As in :class:`MolecularSystem`.

    Returns
    -------
    MolecularSystem

    Raises
    ------
    ValueError
        An unknown solvent, constraint or platform name (the message lists the valid
        ones), an option that does not apply to the input, a missing part (a PSF without
        its parameter files), a malformed CHARMM file or a missing CHARMM parameter, or
        mismatched files.
    OSError
        A missing file.
    """
    structure = Path(structure)
    if not structure.exists():
        raise OSError(f"structure file {structure} does not exist")
    check_platform_name(platform)
    solvent = check_choice(implicit_solvent, IMPLICIT_SOLVENT_MODELS, "implicit solvent")
    constraint_set = check_choice(constraints, CONSTRAINTS, "constraints")
    options = {
        "constraints": openmm_constant(constraint_set),
        "hydrogenMass": None if hydrogen_mass is None else ensure_positive(hydrogen_mass, "hydrogen_mass", "Da") * unit.dalton,
    }
    cutoff = None if nonbonded_cutoff is None else ensure_positive(nonbonded_cutoff, "nonbonded_cutoff", "nm")
    if isinstance(system, openmm.System) or (system is not None and Path(system).suffix.lower() == ".xml"):
        chosen = _chosen(forcefield=forcefield, implicit_solvent=solvent, constraints=constraint_set, nonbonded_cutoff=cutoff, hydrogen_mass=hydrogen_mass)
        if chosen:
            raise ValueError(f"a serialized System is already built; {chosen} apply only when building from prmtop, GROMACS, CHARMM or force-field files")
        omm_system, omm_top, positions, source = _serialized(structure, system)
        constraint_set = None
    else:
        omm_system, omm_top, positions, source, solvent = _built(structure, system, forcefield, solvent, cutoff, options)
        constraint_set = constraint_set or "none"
    top = md.Topology.from_openmm(omm_top)
    if top.n_atoms != omm_system.getNumParticles():
        raise ValueError(
            f"the topology from {structure.name} has {top.n_atoms} atoms but the System has "
            f"{omm_system.getNumParticles()} particles"
        )
    positions = positions_nm(positions)
    if positions.shape != (omm_system.getNumParticles(), 3):
        raise ValueError(f"{structure.name} has {len(positions)} positions but the System has {omm_system.getNumParticles()} particles")
    box_vectors = box_vectors_nm(omm_system)
    return MolecularSystem(
        name=name or structure.stem,
        system=omm_system,
        topology=top,
        openmm_topology=omm_top,
        positions=positions,
        temperature=float(temperature),
        platform=select_platform(platform, omm_system, positions, box_vectors=box_vectors).name,
        collective_variables={**standard_collective_variables(top, positions), **(collective_variables or {})},
        states=dict(states or {}),
        description=describe_hamiltonian(f"{source} with {structure.name}", omm_system, solvent=solvent, constraints=constraint_set),
        box_vectors=box_vectors,
    )


def _chosen(**options: Any) -> str:
    """The names of the options that are not None, joined for a message ("" when none is)."""
    return ", ".join(name for name, value in options.items() if value is not None)


def _pdb(structure: Path):
    """The topology and positions of a PDB or PDBx/mmCIF file."""
    suffix = structure.suffix.lower()
    if suffix not in (".pdb", ".cif", ".pdbx"):
        raise ValueError(f"structure must be a PDB or PDBx/mmCIF file here, got {structure.name}")
    pdb = app.PDBFile(str(structure)) if suffix == ".pdb" else app.PDBxFile(str(structure))
    return pdb.topology, pdb.getPositions(asNumpy=True)


def _serialized(structure: Path, system: str | os.PathLike | openmm.System):
    """A System already built (object or XML file), with the topology and positions of ``structure``."""
    omm_top, positions = _pdb(structure)
    if isinstance(system, openmm.System):
        return system, omm_top, positions, "given openmm.System"
    path = Path(system)
    omm_system = openmm.XmlSerializer.deserialize(path.read_text())
    if not isinstance(omm_system, openmm.System):
        raise TypeError(f"{path} holds a serialized {type(omm_system).__name__}, expected a System")
    return omm_system, omm_top, positions, f"serialized System {path.name}"


def _is_amber(path: Path) -> bool:
    """Whether ``path`` is an Amber prmtop (by suffix, or for ``.top`` by its ``%VERSION``/``%FLAG`` opening)."""
    suffix = path.suffix.lower()
    if suffix in (".prmtop", ".parm7"):
        return True
    if suffix != ".top":
        return False
    with open(path, errors="replace") as handle:
        return handle.readline().lstrip().startswith(("%VERSION", "%FLAG"))


def _built(structure: Path, system, forcefield, solvent: str | None, cutoff: float | None, options: dict):
    """A System built from prmtop, GROMACS top, CHARMM PSF or force-field files with ``options``.

    Returns the System, the openmm.app topology, the positions, the force-field source
    (for the description) and the solvent as chosen or as named by the force-field files.
    """
    path = None if system is None else Path(system)
    if path is not None and path.suffix.lower() == ".psf":
        build, omm_top, positions, source = _charmm(structure, path, forcefield)
        options = {**options, "implicitSolvent": openmm_constant(solvent)}
    elif path is not None and forcefield:
        raise ValueError(
            f"force-field files go with a PDB structure (OpenMM XML) or a CHARMM PSF (its parameter files); "
            f"{path.name} brings its own parameters: drop forcefield ({', '.join(map(str, forcefield))})"
        )
    elif path is not None and _is_amber(path):
        build, omm_top, positions, source = _amber(structure, path, solvent)
        options = {**options, "implicitSolvent": openmm_constant(solvent)}
    elif path is not None and path.suffix.lower() == ".top":
        if solvent not in (None, "none"):
            raise ValueError(f"OpenMM builds GROMACS topologies without implicit solvent; got implicit solvent {solvent} for {path.name}")
        build, omm_top, positions, source = _gromacs(structure, path)
    elif path is not None:
        raise ValueError(
            f"system must be an Amber prmtop, a GROMACS .top, a CHARMM .psf or a serialized System (.xml), got {path.name}"
        )
    else:
        build, omm_top, positions, source, solvent = _openmm_forcefield(structure, forcefield, solvent)
    if _placeholder_box(omm_top.getPeriodicBoxVectors()):
        # CRYST1 1.000 1.000 1.000 marks a structure without a crystal box (NMR, models): not a 1 A periodic box
        omm_top.setPeriodicBoxVectors(None)
    periodic = omm_top.getPeriodicBoxVectors() is not None
    if periodic and solvent not in (None, "none"):
        raise ValueError(f"implicit solvent ({solvent}) needs a structure without a periodic box, but {structure} has one "
                         "(a CRYST1 record): remove it, or use explicit solvent")
    if periodic:
        options = {**options, "nonbondedMethod": app.PME, "nonbondedCutoff": (cutoff or 1.0) * unit.nanometer}
    elif cutoff is not None:
        options = {**options, "nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": cutoff * unit.nanometer}
    else:
        options = {**options, "nonbondedMethod": app.NoCutoff}
    omm_system = build(**options)
    if periodic:
        omm_system.setDefaultPeriodicBoxVectors(*omm_top.getPeriodicBoxVectors())
    return omm_system, omm_top, positions, source, solvent


def _placeholder_box(vectors) -> bool:
    """True for the unit-cell placeholder of the PDB format (CRYST1 1.000 1.000 1.000: no crystal box)."""
    if vectors is None:
        return False
    lengths = [np.linalg.norm(v.value_in_unit(unit.nanometer)) for v in vectors]
    return all(abs(length - 0.1) < 1e-6 for length in lengths)


def _amber(structure: Path, path: Path, solvent: str | None):
    """``prmtop.createSystem``, the topology, the positions (inpcrd/rst7/crd or PDB) and the source of an Amber prmtop."""
    prmtop = app.AmberPrmtopFile(str(path))
    omm_top = prmtop.topology
    box = None
    if structure.suffix.lower() in (".pdb", ".cif", ".pdbx"):
        positions = _pdb(structure)[1]
    else:
        inpcrd = app.AmberInpcrdFile(str(structure))
        positions, box = inpcrd.getPositions(asNumpy=True), inpcrd.boxVectors  # None without a box
    if box is not None and omm_top.getPeriodicBoxVectors() is not None:
        omm_top.setPeriodicBoxVectors(box)  # the coordinates' box (e.g. after NPT), not the prmtop's
    if solvent is None:
        warn_if_made_for_implicit_solvent(prmtop, path)
    return prmtop.createSystem, omm_top, positions, f"Amber prmtop {path.name}"


def _gromacs(structure: Path, path: Path):
    """``GromacsTopFile.createSystem``, the topology, the positions (.gro or PDB) and the source of a GROMACS topology."""
    if structure.suffix.lower() == ".gro":
        gro = app.GromacsGroFile(str(structure))
        box, positions = gro.getPeriodicBoxVectors(), gro.getPositions(asNumpy=True)
    else:
        pdb_top, positions = _pdb(structure)
        box = pdb_top.getPeriodicBoxVectors()
    top_file = app.GromacsTopFile(str(path), periodicBoxVectors=box)
    return top_file.createSystem, top_file.topology, positions, f"GROMACS topology {path.name}"


def _charmm(structure: Path, path: Path, parameter_files):
    """``CharmmPsfFile.createSystem`` with the parameter set, the topology, the positions (.crd or PDB) and the source of a CHARMM PSF.

    A periodic box comes from a PDB's CRYST1 record; a CHARMM .crd has none.
    """
    from openmm.app.internal.charmm.exceptions import CharmmError

    if not parameter_files:
        raise ValueError(
            f"a CHARMM PSF ({path.name}) needs its parameter files: give forcefield (--forcefield) with the "
            f"{', '.join(CHARMM_PARAMETER_SUFFIXES)} files, e.g. par_all36m_prot.prm top_all36_prot.rtf"
        )
    files = [Path(f) for f in parameter_files]
    wrong = [f.name for f in files if f.suffix not in CHARMM_PARAMETER_SUFFIXES]
    if wrong:
        raise ValueError(f"with a CHARMM PSF, forcefield names CHARMM parameter files ({', '.join(CHARMM_PARAMETER_SUFFIXES)}); got {', '.join(wrong)}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"CHARMM parameter file not found: {', '.join(missing)}")
    suffix = structure.suffix.lower()
    if suffix in (".pdb", ".cif", ".pdbx"):
        pdb_top, positions = _pdb(structure)
        box = pdb_top.getPeriodicBoxVectors()
    elif suffix == ".crd":
        positions, box = _charmm_call(lambda: app.CharmmCrdFile(str(structure)).positions, structure), None
    else:
        raise ValueError(f"with a CHARMM PSF, structure must be a CHARMM .crd, a PDB or a PDBx/mmCIF file, got {structure.name}")
    psf = _charmm_call(lambda: app.CharmmPsfFile(str(path), periodicBoxVectors=box), path)
    parameters = _charmm_call(lambda: app.CharmmParameterSet(*map(str, files)), *files)
    # the parameters' atom types give the elements; without them OpenMM guesses elements from masses
    _charmm_call(lambda: psf.loadParameters(parameters), path, *files)

    def build(**options):
        try:
            return psf.createSystem(parameters, **options)
        except CharmmError as error:
            raise ValueError(f"{path.name} with {', '.join(f.name for f in files)}: {error}") from None

    return build, psf.topology, positions, f"CHARMM PSF {path.name} + {' + '.join(f.name for f in files)}"


def _charmm_call(read, *paths: Path):
    """``read()``, with OpenMM's CHARMM file errors (malformed file, missing parameter) as one ``ValueError`` naming ``paths``."""
    from openmm.app.internal.charmm.exceptions import CharmmError

    try:
        return read()
    except CharmmError as error:
        raise ValueError(f"{', '.join(p.name for p in paths)}: {type(error).__name__}: {error}") from None


def _openmm_forcefield(structure: Path, forcefield, solvent: str | None):
    """``ForceField.createSystem`` for a PDB/PDBx structure, its topology and positions, the source, and the solvent chosen or named by the files."""
    if not forcefield:
        raise ValueError("give either a System (XML file, prmtop, GROMACS .top, CHARMM .psf or openmm.System) or force-field file names")
    files = [str(f) for f in forcefield]
    charmm = [f for f in files if Path(f).suffix in CHARMM_PARAMETER_SUFFIXES]
    if charmm:
        raise ValueError(f"CHARMM parameter files ({', '.join(charmm)}) go with a CHARMM PSF: give it as the system file")
    omm_top, positions = _pdb(structure)
    in_files = [f for f in files if f.replace("\\", "/").startswith("implicit/")]
    if in_files and solvent is not None:
        raise ValueError(f"the force-field files already choose the implicit solvent ({', '.join(in_files)}); drop implicit solvent {solvent}")
    if solvent not in (None, "none"):
        files.append(IMPLICIT_SOLVENT_FILES[solvent])
    solvent = solvent or (", ".join(in_files) if in_files else None)
    return partial(app.ForceField(*files).createSystem, omm_top), omm_top, positions, f"OpenMM force field {' + '.join(files)}", solvent


def resolve_system(
    metadata: dict[str, Any] | None = None,
    system: str | None = None,
    structure: str | os.PathLike | None = None,
    system_file: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    *,
    forcefield: tuple[str, ...] | list[str] | None = None,
    implicit_solvent: str | None = None,
    constraints: str | None = None,
    nonbonded_cutoff: float | None = None,
    platform: str = AUTO,
) -> MolecularSystem:
    """The system a command works on: a registered name, the user's own files, or the one ``metadata`` names.

    Parameters
    ----------
    metadata : dict, optional
        A checkpoint's metadata.  The molecule it carries (see
        :func:`system_from_checkpoint_metadata`), or else its ``"system"`` if a registered
        name, is the fallback; a system given must match the molecule carried.
    system : str, optional
        A registered system (:func:`openmm_bg.molecules.systems.list_systems`).
    structure, system_file : path, optional
        The user's own files (see :func:`load_system`); ``system_file`` goes with ``structure``.
    source : path, optional
        The file ``metadata`` came from, named in the error when nothing names a system.
    forcefield, implicit_solvent, constraints, nonbonded_cutoff : optional
        How :func:`load_system` builds the user's own files; they need ``structure``.
    platform : str
        The OpenMM platform of the user's own files (:func:`load_system`: ``"auto"`` times
        the candidates).  A registered system keeps its measured recommended platform,
        and a molecule rebuilt from a checkpoint's metadata runs on Reference.

    Returns
    -------
    MolecularSystem
    """
    if system and structure:
        raise ValueError("give either a system name or --structure, not both")
    building = {"forcefield": forcefield, "implicit_solvent": implicit_solvent, "constraints": constraints, "nonbonded_cutoff": nonbonded_cutoff}
    chosen = _chosen(**building)
    if structure is None and chosen:
        raise ValueError(f"{chosen} apply to your own files: give --structure too")
    given = None
    if system:
        given = get_system(system)
    elif structure is not None:
        if not Path(structure).is_file():
            raise FileNotFoundError(f"structure file not found: {structure}")
        if system_file is not None and not Path(system_file).is_file():
            raise FileNotFoundError(f"system file not found: {system_file}")
        given = load_system(structure, system_file, platform=platform, **building)
    if given is not None:
        if (metadata or {}).get(MOLECULE_KEY) is not None:
            check_same_molecule(_stored_molecule(metadata[MOLECULE_KEY], source), given, source)
        return given
    if system_file is not None:
        raise ValueError("--system-file goes with --structure")
    molecule = system_from_checkpoint_metadata(metadata or {}, source)
    if molecule is not None:
        return molecule
    name = (metadata or {}).get("system")
    choices = f"(one of {', '.join(list_systems())}) or --structure with your own files"
    if source is None:
        raise ValueError(f"give a system name {choices}")
    named = f"names the system {name!r}, which is not a registered system" if name else "names no system"
    raise ValueError(f"{source} {named}; pass --system NAME {choices}")


def checkpoint_record(molecule: MolecularSystem) -> dict[str, Any]:
    """``molecule`` as plain strings, numbers and lists, for a checkpoint's metadata.

    Parameters
    ----------
    molecule : MolecularSystem

    Returns
    -------
    dict
        ``name``, ``temperature_K``, ``description``, ``system_xml`` (the serialized
        System), ``topology_pdb`` (a PDB of the topology and ``positions``) and
        ``positions_nm`` (n_atoms lists of 3 floats, nm, at full precision).
        :func:`system_from_checkpoint_metadata` rebuilds the molecule from it.
    """
    pdb = io.StringIO()
    app.PDBFile.writeFile(molecule.openmm_topology, molecule.positions * unit.nanometer, pdb, keepIds=True)
    return {
        "name": molecule.name, "temperature_K": float(molecule.temperature), "description": molecule.description,
        "system_xml": openmm.XmlSerializer.serialize(molecule.system), "topology_pdb": pdb.getvalue(),
        "positions_nm": np.asarray(molecule.positions, dtype=np.float64).tolist(),
    }


def checkpoint_metadata(molecule: MolecularSystem) -> dict[str, Any]:
    """What every generator checkpoint records of its molecule: ``system`` (its name), ``temperature_K`` and the molecule itself.

    :func:`system_from_checkpoint_metadata` reads it back.
    """
    return {"system": molecule.name, "temperature_K": float(molecule.temperature), MOLECULE_KEY: checkpoint_record(molecule)}


def _stored_molecule(record: Any, source: str | os.PathLike | None = None, platform: str = "Reference") -> MolecularSystem:
    """A fresh :class:`MolecularSystem` from a :func:`checkpoint_record`, with the named collective variables."""
    where = f"{source} records" if source is not None else "the checkpoint records"
    try:
        omm_system = openmm.XmlSerializer.deserialize(record["system_xml"])
        pdb = app.PDBFile(io.StringIO(record["topology_pdb"]))
        positions = np.asarray(record["positions_nm"], dtype=np.float64)
        temperature, name, description = float(record["temperature_K"]), str(record["name"]), str(record["description"])
    except Exception as error:  # any malformed field: one message
        raise ValueError(f"{where} a molecule that cannot be read back ({type(error).__name__}: {error})") from None
    if not isinstance(omm_system, openmm.System):
        raise ValueError(f"{where} a serialized {type(omm_system).__name__} as its molecule, expected a System")
    try:  # a System can deserialize and still not run: a broken energy expression, a particle index out of range
        openmm.Context(omm_system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    except Exception as error:
        raise ValueError(f"{where} a System that OpenMM cannot run ({type(error).__name__}: {' '.join(str(error).split())})") from None
    top = md.Topology.from_openmm(pdb.topology)
    return MolecularSystem(
        name=name, system=omm_system, topology=top, openmm_topology=pdb.topology, positions=positions,
        temperature=temperature, platform=platform, collective_variables=standard_collective_variables(top, positions),
        description=description, box_vectors=box_vectors_nm(omm_system),
    )


def check_same_molecule(stored: MolecularSystem, given: MolecularSystem, source: str | os.PathLike | None = None) -> None:
    """Raise a ``ValueError`` naming the first difference between a checkpoint's molecule and the one given.

    Compared: the particle count, the element of each atom in order, and the potential
    energy at ``stored.positions`` on the Reference platform (within 1e-6 relative, kJ/mol).
    """
    where = f"the molecule stored in {source}" if source is not None else "the checkpoint's molecule"
    if stored.n_atoms != given.n_atoms:
        raise ValueError(f"{given.name} does not match {where} ({stored.name}): {given.n_atoms} particles, expected {stored.n_atoms}")
    for index, (mine, theirs) in enumerate(zip(stored.topology.atoms, given.topology.atoms)):
        expected, got = _element(mine), _element(theirs)
        if expected != got:
            raise ValueError(f"{given.name} does not match {where} ({stored.name}): atom {index} ({theirs}) is {got}, expected {expected} ({mine})")
    # both on the Reference platform: platforms differ by more than the tolerance
    expected_energy, energy = (float(replace(m, platform="Reference").reduced_potential(stored.positions)[0]) * m.kT for m in (stored, given))
    if not abs(energy - expected_energy) <= 1e-6 * max(abs(energy), abs(expected_energy), 1.0):
        raise ValueError(
            f"{given.name} does not match {where} ({stored.name}): its potential energy at the stored positions is "
            f"{energy:.8g} kJ/mol, expected {expected_energy:.8g} kJ/mol"
        )


def _element(atom) -> str:
    """The element symbol of an mdtraj atom, or "none" (virtual sites)."""
    return "none" if atom.element is None else str(atom.element.symbol)


def system_from_checkpoint_metadata(metadata: dict[str, Any], source: str | os.PathLike | None = None) -> MolecularSystem | None:
    """The molecule a checkpoint's metadata carries or names; None when it does neither.

    Parameters
    ----------
    metadata : dict
        A checkpoint's metadata.  With a stored molecule (``metadata["molecule"]``, from
        :func:`checkpoint_record`): the registered system of that name when it matches the
        stored one (it brings its own collective variables and states), else the stored
        molecule rebuilt on the Reference platform, with the named collective variables.
        Without one: the registered system ``metadata["system"]`` names, if any.
    source : path, optional
        The checkpoint, named in errors.

    Returns
    -------
    MolecularSystem or None
    """
    record = metadata.get(MOLECULE_KEY)
    name = metadata.get("system")
    if record is None:
        return get_system(name) if isinstance(name, str) and name in list_systems() else None
    stored = _stored_molecule(record, source)
    if stored.name in list_systems():
        registered = get_system(stored.name)
        try:
            check_same_molecule(stored, registered, source)
        except ValueError:
            return stored  # the user's own molecule under a registered name
        return registered
    return stored
