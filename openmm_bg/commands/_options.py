"""The command-line options that choose a system and state how the user's own is built, defined once.

``simulate``, ``train``, ``sample`` and ``free-energy`` add them with
:func:`add_system_arguments`: ``--system NAME`` is a registered system in all four
(``simulate`` and ``train`` also take it as the positional ``SYSTEM``).
:func:`resolve_command_system` builds the system they name; a command that builds it
otherwise passes :func:`hamiltonian_keywords` on and builds inside
:func:`reporting_hamiltonian`.  Either prints loading warnings as one line each, and for
a user's system the Hamiltonian and the OpenMM platform chosen, one line each.

Every command takes ``--threads`` (:func:`add_threads_argument`): torch's intra-op
threads, ``auto`` by default, chosen by :func:`command_threads` from a short timing
of the command's own work (:func:`openmm_bg.training.threads.choose_torch_threads`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..molecules.hamiltonian import CONSTRAINTS, IMPLICIT_SOLVENT_MODELS

__all__ = [
    "add_system_arguments", "registered_system", "hamiltonian_keywords", "reporting_hamiltonian", "resolve_command_system",
    "add_threads_argument", "requested_threads", "command_threads", "settings_threads", "sampling_threads", "SAMPLING_PROBE", "sampling_workload", "training_workload",
]

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
        Also take the registered name as an optional positional ``SYSTEM`` (``simulate``,
        ``train``; :func:`registered_system` reads either), besides ``--system NAME``.
    hamiltonian : bool
        Also ``--forcefield``, ``--implicit-solvent``, ``--constraints`` and
        ``--nonbonded-cutoff``; only for commands that pass them on with
        :func:`hamiltonian_keywords`.
    hydrogen_mass : bool
        Also ``--hydrogen-mass`` (for dynamics; masses do not change energies).
    """
    named_help = "a registered system (see openmm_bg.molecules.list_systems())"
    if positional:
        parser.add_argument("system", nargs="?", metavar="SYSTEM", help=f"{named_help}, the same as --system NAME; or omit it and give --structure")
        parser.add_argument("--system", dest="system_option", metavar="NAME", help=f"{named_help}, the same as the positional SYSTEM")
    else:
        parser.add_argument("--system", metavar="NAME", help=f"{named_help} instead of the one in the checkpoint")
    own = parser.add_argument_group("your own system (instead of a registered one)")
    own.add_argument("--structure", type=Path,
                     help="topology and positions: PDB or PDBx/mmCIF; .inpcrd/.rst7/.crd with an Amber prmtop; "
                          ".gro with a GROMACS .top; CHARMM .crd with a .psf")
    own.add_argument("--system-file", type=Path,
                     help="Amber .prmtop/.parm7, GROMACS .top, CHARMM .psf (with --forcefield), "
                          "or a serialized System (.xml, already built: no options below)")
    if hamiltonian:
        own.add_argument("--forcefield", nargs="+", metavar="FILE",
                         help="the force field a --system-file does not carry: OpenMM XML files for a PDB --structure without "
                              "--system-file (e.g. amber14-all.xml implicit/gbn2.xml), or a CHARMM .psf's parameter files "
                              "(.prm/.par, .rtf/.top, .str)")
        own.add_argument("--implicit-solvent", metavar="MODEL",
                         help=f"one of {', '.join(IMPLICIT_SOLVENT_MODELS)} (default: none; a prmtop made for implicit solvent warns)")
        own.add_argument("--constraints", metavar="SET",
                         help=f"one of {', '.join(CONSTRAINTS)} (default: none, every bond flexible; water stays rigid)")
        own.add_argument("--nonbonded-cutoff", type=float, metavar="NM",
                         help="nm (default: no cutoff without a box; 1 nm and PME with one)")
    if hydrogen_mass:
        parser.add_argument("--hydrogen-mass", type=float, metavar="DA",
                            help="Da; repartition hydrogen masses for a longer time step (keeps equilibrium; default: the system's masses)")


def registered_system(args: argparse.Namespace) -> str | None:
    """The registered system ``args`` name: ``--system NAME`` or, where the command has it, the positional ``SYSTEM``.

    Raises
    ------
    ValueError
        If both are given and differ.
    """
    option = args.system_option if "system_option" in args else None
    if args.system and option and args.system != option:
        raise ValueError(f"SYSTEM {args.system!r} and --system {option!r} differ; give the registered system once")
    return args.system or option


def hamiltonian_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`openmm_bg.molecules.load_system` given on the command line."""
    return {
        "forcefield": args.forcefield,
        "implicit_solvent": args.implicit_solvent,
        "constraints": args.constraints,
        "nonbonded_cutoff": args.nonbonded_cutoff,
    }


class _PlatformLines(logging.Handler):
    """Collects the platform choices :func:`openmm_bg.molecules.platforms.select_platform` logs, to print them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _platform_choices() -> Iterator[list[str]]:
    """The lines logged by ``openmm_bg.molecules.platforms`` inside the block (and only those: they are not passed on)."""
    logger = logging.getLogger("openmm_bg.molecules.platforms")
    handler, level, propagate = _PlatformLines(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def reporting_hamiltonian(command: str, build: Callable[[], T], own_files: bool, describe: Callable[[T], str] | None = None) -> T:
    """Run ``build()``, printing its warnings as one line each and, for the user's files, the Hamiltonian and the platform.

    Parameters
    ----------
    command : str
        The subcommand, named in the warning lines.
    build : callable
        Builds the system (or what holds it).
    own_files : bool
        Whether ``build`` loads the user's own files (``--structure``); then the
        Hamiltonian's description is printed, and the OpenMM platform chosen (by a timing,
        or by name) as :func:`openmm_bg.molecules.load_system` logs it.
    describe : callable, optional
        The description of what ``build`` returns; default its ``.description``.

    Returns
    -------
    what ``build`` returns
    """
    with warnings.catch_warnings(record=True) as caught, _platform_choices() as platform_lines:
        warnings.simplefilter("always", UserWarning)
        built = build()
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"openmm-bg {command}: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if own_files:
        print(f"Hamiltonian: {describe(built) if describe else built.description}")
        for line in platform_lines:
            print(line)
    return built


def resolve_command_system(command: str, args: argparse.Namespace, platform: str = "auto"):
    """The system named by ``args`` (from :func:`add_system_arguments` with ``hamiltonian=True``), reported.

    Parameters
    ----------
    command : str
    args : argparse.Namespace
    platform : str
        The OpenMM platform for the user's own files: ``"auto"`` (times the candidates) or a name.

    Returns
    -------
    openmm_bg.molecules.MolecularSystem
    """
    from ..molecules.loading import resolve_system

    name = registered_system(args)
    if name and args.structure:
        raise ValueError(f"give either a ready-made SYSTEM or --structure, not both (got {name!r} and {args.structure})")

    def build():
        return resolve_system(system=name, structure=args.structure, system_file=args.system_file, platform=platform, **hamiltonian_keywords(args))

    return reporting_hamiltonian(command, build, own_files=args.structure is not None)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N|auto``, the number of torch intra-op threads (see :func:`command_threads`)."""
    parser.add_argument(
        "--threads", default="auto", metavar="N",
        help="torch intra-op threads: a positive integer, or auto (the default): OMP_NUM_THREADS if set, "
        "else 1 or all cores, whichever runs a short timing of this command's own work faster "
        "(on a busy machine one thread can be 10 times faster)",
    )


def requested_threads(args: argparse.Namespace) -> int | None:
    """``--threads`` as a count, or None for ``auto``; a ``ValueError`` for anything else.

    Commands call it first, so that a bad value ends the run before any work.
    """
    text = str(args.threads).strip()
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--threads must be a positive integer or auto, got {args.threads!r}")
    return int(text)


@contextlib.contextmanager
def command_threads(args: argparse.Namespace, workload: Callable[[], object] | None, per: str = "step") -> Iterator[int]:
    """Choose the torch threads for the block, print the one line that says so, and restore them after it.

    Parameters
    ----------
    args : argparse.Namespace
        With ``threads`` from :func:`add_threads_argument`.
    workload : callable or None
        A short piece of the command's own work to time; it runs at least three times,
        so ideally well under 0.3 s on one thread.  None for a command without torch
        work (one thread unless asked otherwise).
    per : str
        What one workload call is, for the printed line (``"step"``, ``"batch"``).

    Yields
    ------
    int
        The number of threads in force inside the block.
    """
    from ..training.threads import choose_torch_threads, format_thread_choice, torch_threads

    choice = choose_torch_threads(workload, override=requested_threads(args))
    print(format_thread_choice(choice, per=per, override_label="--threads"))
    # the command's own run: set for the block, and restored for a caller of openmm_bg.cli.main
    with torch_threads(choice.n_threads):
        yield choice.n_threads


def settings_threads(args: argparse.Namespace, configured: int, setting: str) -> int:
    """The threads of a recipe that sets its own (``demo``, ``toy``): ``--threads N``, else its setting; prints the line.

    ``auto`` keeps the recipe's setting, unmeasured: the recipe applies its setting
    itself, around work the command cannot time beforehand.

    Parameters
    ----------
    args : argparse.Namespace
        With ``threads`` from :func:`add_threads_argument`.
    configured : int
        The recipe's setting.
    setting : str
        Its name, for the printed line (e.g. ``"DemoSettings.torch_threads"``).
    """
    requested = requested_threads(args)
    if requested is not None:
        print(f"torch threads: {requested} (--threads)")
        return requested
    print(f"torch threads: {configured} ({setting}; --threads N to change)")
    return configured


#: samples in the batch :func:`sampling_workload` times: about 60 ms for alanine dipeptide on one core
SAMPLING_PROBE = 256


def sampling_workload(generator, size: int, seed: int = 0) -> Callable[[], object]:
    """The network work of a sampling batch of ``size`` samples of ``generator`` (proposals and their densities), to time.

    Target energies are left out: OpenMM computes them outside torch's threads, and a
    timing must not cost energy evaluations that the run's count would miss.  Its own
    seeded ``torch.Generator``: torch's global generator and the run's draws are untouched.
    """

    def workload():
        import torch

        return generator.propose(size, generator=torch.Generator().manual_seed(seed))

    return workload


def sampling_threads(args: argparse.Namespace, generator) -> contextlib.AbstractContextManager[int]:
    """:func:`command_threads` for drawing ``args.n_samples`` from ``generator`` in ``args.batch_size`` batches (``sample``, ``free-energy``)."""
    probe = min(args.batch_size, args.n_samples, SAMPLING_PROBE)
    return command_threads(args, sampling_workload(generator, probe, args.seed), per=f"{probe} samples")


def training_workload(generator, batch=None, kl_batch_size: int = 0, temperatures=(1.0,), seed: int = 0) -> Callable[[], object]:
    """The network work of one training step of ``generator``, to time; its weights are left as they were.

    The likelihood of ``batch`` and, with ``kl_batch_size``, generator samples drawn with
    their gradient at each of ``temperatures``, then the backward pass.  Target energies
    are left out: OpenMM computes them outside torch's threads.

    Parameters
    ----------
    generator : BoltzmannGenerator
    batch : Tensor, shape (batch_size, *event_shape), nm, optional
        Configurations for the likelihood term (None: no such term).
    kl_batch_size : int
        Samples per temperature for the by-energy term (0: no such term).
    temperatures : sequence of float
        Relative temperatures of the by-energy term.
    seed : int
        Seed of the samples' own ``torch.Generator``.
    """
    import torch

    noise = torch.Generator().manual_seed(seed)

    def workload():
        terms = [] if batch is None else [-generator.log_prob(batch).mean()]
        if kl_batch_size:
            terms += [generator.propose(kl_batch_size, tau, generator=noise, with_grad=True)[2].mean() for tau in temperatures]
        if terms:
            torch.stack(terms).sum().backward()
            generator.zero_grad(set_to_none=True)

    return workload
