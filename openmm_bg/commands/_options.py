"""The command-line options that choose a system and state how the user's own is built, defined once.

``simulate``, ``train``, ``sample`` and ``free-energy`` add them with
:func:`add_system_arguments`.  :func:`resolve_command_system` builds the system they
name; a command that builds it otherwise passes :func:`hamiltonian_keywords` on and
builds inside :func:`reporting_hamiltonian`.  Either prints loading warnings as one
line each and the Hamiltonian of a user's system as one line.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..molecules.hamiltonian import CONSTRAINTS, IMPLICIT_SOLVENT_MODELS

__all__ = ["add_system_arguments", "hamiltonian_keywords", "reporting_hamiltonian", "resolve_command_system"]

T = TypeVar("T")


def add_system_arguments(
    parser: argparse.ArgumentParser,
    *,
    positional: bool = False,
    hamiltonian: bool = False,
    hydrogen_mass: bool = False,
) -> None:
    """Add the options that choose the system: a registered name, or the user's own files.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    positional : bool
        The registered name as an optional positional ``SYSTEM`` (``simulate``, ``train``)
        instead of ``--system NAME`` (``sample``, ``free-energy``).
    hamiltonian : bool
        Also ``--forcefield``, ``--implicit-solvent``, ``--constraints`` and
        ``--nonbonded-cutoff``; only for commands that pass them on with
        :func:`hamiltonian_keywords`.
    hydrogen_mass : bool
        Also ``--hydrogen-mass`` (for dynamics; masses do not change energies).
    """
    named_help = "a registered system (see openmm_bg.molecules.list_systems())"
    if positional:
        parser.add_argument("system", nargs="?", help=f"{named_help}, or omit it and give --structure")
    else:
        parser.add_argument("--system", help=f"{named_help} instead of the one in the checkpoint")
    own = parser.add_argument_group("your own system (instead of a registered one)")
    own.add_argument("--structure", type=Path,
                     help="topology and positions: PDB or PDBx/mmCIF; .inpcrd/.rst7/.crd with an Amber prmtop; .gro with a GROMACS .top")
    own.add_argument("--system-file", type=Path,
                     help="Amber .prmtop/.parm7, GROMACS .top, or a serialized System (.xml, already built: no options below)")
    if hamiltonian:
        own.add_argument("--forcefield", nargs="+", metavar="XML",
                         help="OpenMM force-field files for a PDB --structure, e.g. amber14-all.xml implicit/gbn2.xml")
        own.add_argument("--implicit-solvent", metavar="MODEL",
                         help=f"one of {', '.join(IMPLICIT_SOLVENT_MODELS)} (default: none; a prmtop made for implicit solvent warns)")
        own.add_argument("--constraints", metavar="SET",
                         help=f"one of {', '.join(CONSTRAINTS)} (default: none, every bond flexible; water stays rigid)")
        own.add_argument("--nonbonded-cutoff", type=float, metavar="NM",
                         help="nm (default: no cutoff without a box; 1 nm and PME with one)")
    if hydrogen_mass:
        parser.add_argument("--hydrogen-mass", type=float, metavar="DA",
                            help="Da; repartition hydrogen masses for a longer time step (keeps equilibrium; default: the system's masses)")


def hamiltonian_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`openmm_bg.molecules.load_system` given on the command line."""
    return {
        "forcefield": args.forcefield,
        "implicit_solvent": args.implicit_solvent,
        "constraints": args.constraints,
        "nonbonded_cutoff": args.nonbonded_cutoff,
    }


def reporting_hamiltonian(command: str, build: Callable[[], T], own_files: bool, describe: Callable[[T], str] | None = None) -> T:
    """Run ``build()``, printing its warnings as one line each and, for the user's files, the Hamiltonian.

    Parameters
    ----------
    command : str
        The subcommand, named in the warning lines.
    build : callable
        Builds the system (or what holds it).
    own_files : bool
        Whether ``build`` loads the user's own files (``--structure``); then the
        Hamiltonian's description is printed.
    describe : callable, optional
        The description of what ``build`` returns; default its ``.description``.

    Returns
    -------
    what ``build`` returns
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        built = build()
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"openmm-bg {command}: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if own_files:
        print(f"Hamiltonian: {describe(built) if describe else built.description}")
    return built


def resolve_command_system(command: str, args: argparse.Namespace):
    """The system named by ``args`` (from :func:`add_system_arguments` with ``hamiltonian=True``), reported.

    Returns
    -------
    openmm_bg.molecules.MolecularSystem
    """
    from ..molecules.loading import resolve_system

    def build():
        return resolve_system(system=args.system, structure=args.structure, system_file=args.system_file, **hamiltonian_keywords(args))

    return reporting_hamiltonian(command, build, own_files=args.structure is not None)
