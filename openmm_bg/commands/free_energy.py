"""Free-energy difference between two states from importance-weighted generator samples.

SOURCE is a folder written by ``openmm-bg sample`` (samples.npz, samples.dcd,
samples.pdb) or a generator checkpoint, from which -n samples are first drawn
exactly as ``openmm-bg sample`` draws them (nothing is written then).

A state is the name of a built-in state of the system (``phi_negative``,
``phi_positive`` for alanine dipeptide) or a boolean expression over collective
variables: the system's own (``phi``, ``psi`` for alanine dipeptide, radians), the
named ones of any peptide or protein (``phi_ALA2`` or ``phi_2`` by residue name and
number, ``psi_...``, ``chi1_TRP2`` ... ``chi4_...`` in radians, ``rg``, ``rmsd_ca`` in nm
and ``q_native`` against the system's initial positions; see
:mod:`openmm_bg.molecules.named_cvs`), and any defined with
``--cv NAME=dihedral:i,j,k,l`` (radians) or ``--cv NAME=distance:i,j`` (nm), with atom
indices counted from 0.  ``--list-cvs`` prints them (name, kind, atoms, unit) and
the built-in states, and exits without sampling.  Expressions
take comparisons (chains too), and/or/not, + - * /, numbers and the constants
``pi`` and ``deg`` (pi/180), e.g. ``"phi > 0"``, ``"-pi < psi < 0"``,
``"phi > 30*deg and not (d < 0.35)"``; see :mod:`openmm_bg.molecules.states` and
:mod:`openmm_bg.molecules.expressions`.

The estimate is ``F_B - F_A = -ln(sum_B w / sum_A w)`` in kT with the
self-normalised importance weights ``w`` of all samples drawn (those outside the
coordinate domain have zero weight), and a bootstrap standard error over samples
(:func:`openmm_bg.analysis.state_free_energy`).  The report gives the
Kish ESS of all samples, the Pareto k-hat of their weights (Vehtari et al.; above
0.7 the weights cannot be trusted), the number of samples and the ESS in each state,
and a ``warning`` line for each reason the estimate and its bootstrap error cannot be
trusted (heavy-tailed weights, fewer than 10 effective samples in a state, bootstrap
resamples that leave a state empty: then the error is ``inf``).  A state without any
weight is an error (exit 2).  Where
the repository bundles a reference for the two states (alanine dipeptide in vacuum,
phi < 0 vs phi > 0 at 300 K), it is printed with the deviation.  --output writes
the numbers to a JSON file.

With ``--md-a`` and ``--md-b`` (trajectories whose frames inside each state sample it,
such as MD; SOURCE a checkpoint), the command also prints the two-sided estimate:
BAR within each state between the generator's samples and the frames, through the
latent state (:func:`openmm_bg.analysis.two_sided_state_free_energy`), each trajectory
thinned to independent frames first, and a warning when the two estimates differ by
more than two combined standard errors.  Use frames the generator was not trained on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import ensure_count
from ..analysis.states import diagnostic_lines, state_free_energy
from ..units import kt_kcalmol
from ._options import add_system_arguments, add_threads_argument, hamiltonian_keywords, reporting_hamiltonian, requested_threads, sampling_threads

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg free-energy``."""
    parser.add_argument("source", type=Path, metavar="SOURCE", help="a folder written by openmm-bg sample, or a generator checkpoint (.pt) to sample from")
    parser.add_argument("--state-a", metavar="DEF", help="state A (required): a built-in state name or an expression such as 'phi < 0'")
    parser.add_argument("--state-b", metavar="DEF", help="state B (required): a built-in state name or an expression such as 'phi > 0'")
    parser.add_argument(
        "--list-cvs", action="store_true", help="print the collective variables and built-in states SOURCE's molecule offers, and exit without sampling"
    )
    parser.add_argument(
        "--cv", action="append", default=[], metavar="NAME=KIND:ATOMS",
        help="an extra collective variable for the expressions: NAME=dihedral:i,j,k,l (radians) or NAME=distance:i,j (nm); repeatable",
    )
    parser.add_argument("-n", "--n-samples", type=int, default=100_000, metavar="N", help="samples to draw when SOURCE is a checkpoint (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draws and of the bootstrap (default 0)")
    parser.add_argument("--batch-size", type=int, default=10000, help="samples per batch when sampling (default 10000)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the error (default 200)")
    parser.add_argument(
        "--md-a", nargs="+", type=Path, default=[], metavar="TRAJ",
        help="trajectories (e.g. MD) whose frames inside state A sample it; with --md-b, adds the two-sided estimate (SOURCE must be a checkpoint)",
    )
    parser.add_argument("--md-b", nargs="+", type=Path, default=[], metavar="TRAJ", help="the same for state B")
    add_system_arguments(parser, hamiltonian=True)
    add_threads_argument(parser)
    parser.add_argument("--output", "-o", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument("--no-progress", action="store_true")


def _samples_and_molecule(args: argparse.Namespace, draw: bool = True):
    """The samples (drawn or read; None from a checkpoint unless ``draw``), the system whose CVs and states apply or None, the topology, the generator (None for a sample folder)."""
    from ..molecules.loading import resolve_system
    from ..molecules.trajectories import check_same_atoms
    from ..molecules.systems import get_system, list_systems
    from ..sampling import draw_samples, load_checkpoint, load_samples

    source: Path = args.source
    if source.is_dir():
        samples, topology = load_samples(source)
        if args.system or args.structure:
            molecule = reporting_hamiltonian(
                "free-energy",
                lambda: resolve_system({}, args.system, args.structure, args.system_file, source, **hamiltonian_keywords(args)),
                own_files=args.structure is not None,
            )
        elif args.system_file is not None:
            raise ValueError("--system-file goes with --structure")
        else:
            molecule = get_system(samples.system) if samples.system in list_systems() else None
        if molecule is not None:
            try:
                check_same_atoms(molecule.topology, topology, "sample folder's topology")
            except ValueError as error:
                raise ValueError(f"the samples in {source} do not belong to {molecule.name}: {error}") from None
            topology = molecule.topology
        return samples, molecule, topology, None
    if not source.exists():
        raise FileNotFoundError(f"{source} not found; give a folder written by openmm-bg sample or a generator checkpoint (.pt)")
    ensure_count(args.n_samples, "-n")
    ensure_count(args.batch_size, "--batch-size")
    generator, molecule, temperature, _ = reporting_hamiltonian(
        "free-energy",
        lambda: load_checkpoint(source, system=args.system, structure=args.structure, system_file=args.system_file, **hamiltonian_keywords(args)),
        own_files=args.structure is not None, describe=lambda loaded: loaded[1].description,
    )
    if not draw:
        return None, molecule, molecule.topology, generator
    with sampling_threads(args, generator):
        samples = draw_samples(
            generator, args.n_samples, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
            system=molecule.name, temperature_K=temperature,
        )
    if samples.n_written == 0:
        raise ValueError(f"all {samples.n_requested} samples fell outside the generator's coordinate domain; is the generator trained for {molecule.name}?")
    return samples, molecule, molecule.topology, generator


def _collective_variables(args: argparse.Namespace, molecule, topology) -> dict:
    """The system's own collective variables, the named ones of its topology, and those of --cv.

    A --cv may reuse a name of the named ones (``--cv phi=dihedral:...`` as before they
    existed), not that of a system's own or of another --cv.
    """
    from ..molecules.collective_variables import parse_collective_variable
    from ..molecules.named_cvs import standard_collective_variables

    if molecule is None:
        own: dict = {}
        variables = standard_collective_variables(topology)
    else:
        # the system's own take precedence (a ready-made system keeps its rmsd_ca and states)
        own = dict(molecule.collective_variables)
        variables = {**standard_collective_variables(molecule.topology, molecule.positions), **own}
    box = None if molecule is None or molecule.box_vectors is None else np.diag(molecule.box_vectors)
    for spec in args.cv:
        name, cv = parse_collective_variable(spec, topology, box_lengths=box, reserved=own)
        own[name] = variables[name] = cv
    return variables


def _list_collective_variables(args: argparse.Namespace) -> int:
    """Print what ``--list-cvs`` prints; return 0."""
    from ..molecules.named_cvs import describe_collective_variable

    samples, molecule, topology, _ = _samples_and_molecule(args, draw=False)
    variables = _collective_variables(args, molecule, topology)
    name = molecule.name if molecule is not None else (samples.system or str(args.source))
    print(f"collective variables of {name}: {len(variables)}" + ("" if variables else " (define some with --cv)"))
    rows = [(key, *describe_collective_variable(cv)) for key, cv in variables.items()]
    widths = [max(len(row[i]) for row in rows + [("name", "kind", "atoms", "unit")]) for i in range(4)]
    for row in [("name", "kind", "atoms", "unit"), *rows]:
        print("  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip())
    states = sorted(molecule.states) if molecule is not None else []
    print(f"built-in states: {', '.join(states) if states else 'none'}")
    return 0


def _two_sided(args: argparse.Namespace, generator, topology, samples, states, in_states, names, one_sided: dict, kcal: float) -> dict:
    """Print and return the two-sided estimate: BAR between the generator and the --md-a/--md-b frames inside each state."""
    from ..analysis.states import two_sided_state_free_energy
    from ..molecules.states import evaluate_states
    from ..molecules.trajectories import load_trajectory
    from ..sampling import weigh_configurations

    series, used = [], []
    for paths, state, name in ((args.md_a, states[0], "--md-a"), (args.md_b, states[1], "--md-b")):
        per_state, frames = [], [0, 0]
        for path in paths:
            positions = load_trajectory(path, topology)
            inside = evaluate_states([state], positions)[0]
            frames[0] += int(inside.sum())
            frames[1] += positions.shape[0]
            if inside.any():
                per_state.append(weigh_configurations(generator, positions[inside], batch_size=args.batch_size))
        if not per_state:
            raise ValueError(f"no frame of {name} ({', '.join(p.name for p in paths)}) lies in state {state.definition!r}")
        series.append(per_state)
        used.append(frames)
    result = two_sided_state_free_energy(
        samples.log_weight, *in_states, *series, n_out_of_domain=samples.n_out_of_domain, n_bootstrap=args.bootstrap, seed=args.seed,
        names=names, warn=False,
    )
    for key, (inside, total) in zip("ab", used):
        print(f"state {key.upper()} trajectories  {inside} of {total} frames inside; {result[f'samples_{key}']} independent "
              f"(statistical inefficiency up to {result[f'inefficiency_{key}']:.1f} frames)")
    for message in result["warnings"]:
        print(f"warning               {message}")
    value, error = result["delta_f_kT"], result["error_kT"]
    print(
        f"F_B - F_A two-sided   {value:.3f} +- {error:.3f} kT (BAR between the generator and each state's trajectories) "
        f"= {value * kcal:.3f} +- {error * kcal:.3f} kcal/mol" + ("" if result["reliable"] else "; NOT RELIABLE, see the warnings above")
    )
    gap = one_sided["delta_f_kT"] - value
    combined = math.hypot(one_sided["error_kT"], error)
    z = gap / combined if 0 < combined < math.inf else math.nan
    result["one_sided_minus_two_sided_kT"] = gap
    if math.isfinite(z) and abs(z) > 2:
        print(f"warning               the importance-weight and two-sided estimates differ by {gap:+.3f} kT ({z:+.1f} combined standard errors): "
              "either the generator misses part of a state, or a trajectory does not sample the whole of its state "
              "(the two-sided estimate assumes it does: check that it crosses between the basins inside its state)")
    else:
        print(f"agreement             importance weights minus two-sided {gap:+.3f} kT" + (f" ({z:+.1f} combined standard errors)" if math.isfinite(z) else ""))
    return result


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg free-energy``; return the exit status."""
    from ..sampling import report_lines

    from ..molecules.collective_variables import CV_SPEC_FORMS
    from ..molecules.states import bundled_reference, evaluate_states, parse_state

    if args.list_cvs:
        return _list_collective_variables(args)
    missing = [flag for flag, value in (("--state-a", args.state_a), ("--state-b", args.state_b)) if value is None]
    if missing:
        raise ValueError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (or --list-cvs to see the collective variables)")
    ensure_count(args.bootstrap, "--bootstrap", 2)
    requested_threads(args)
    if bool(args.md_a) != bool(args.md_b):
        raise ValueError("the two-sided estimate needs trajectories of both states: give --md-a and --md-b")
    if args.md_a and args.source.is_dir():
        raise ValueError(f"--md-a/--md-b need the generator: give its checkpoint (.pt) as SOURCE instead of the sample folder {args.source}")
    for path in [*args.md_a, *args.md_b]:
        if not path.is_file():
            raise FileNotFoundError(f"trajectory {path} not found")
    samples, molecule, topology, generator = _samples_and_molecule(args)
    variables = _collective_variables(args, molecule, topology)
    builtin_states = dict(molecule.states) if molecule is not None else {}
    hint = f"; list them with openmm-bg free-energy --list-cvs {args.source}; define more with --cv " + " or ".join(CV_SPEC_FORMS)
    state_a = parse_state(args.state_a, variables, builtin_states, label="state definition for --state-a", hint=hint)
    state_b = parse_state(args.state_b, variables, builtin_states, label="state definition for --state-b", hint=hint)
    in_a, in_b = evaluate_states([state_a, state_b], samples.positions)
    names = (f"A ({state_a.definition!r})", f"B ({state_b.definition!r})")
    result = state_free_energy(
        samples.log_weight, in_a, in_b, n_out_of_domain=samples.n_out_of_domain, n_bootstrap=args.bootstrap, seed=args.seed, names=names,
        warn=False,  # the warnings are printed below, one line each
    )
    kcal = kt_kcalmol(samples.temperature_K)
    system_name = molecule.name if molecule is not None else samples.system
    reference = bundled_reference(system_name, state_a.definition, state_b.definition, samples.temperature_K)

    printed = report_lines(samples, kept="read" if args.source.is_dir() else "kept")
    # the sample summary already gives the k-hat line (and its warning): print each line once
    printed += [line for line in diagnostic_lines(result, samples.n_requested, (repr(state_a.definition), repr(state_b.definition))) if line not in printed]
    for line in printed:
        print(line)
    if result["n_both"]:
        print(f"note                  {result['n_both']} samples lie in both states")
    value, error = result["delta_f_kT"], result["error_kT"]
    print(
        f"F_B - F_A             {value:.3f} +- {error:.3f} kT (bootstrap, {args.bootstrap} resamples) "
        f"= {value * kcal:.3f} +- {error * kcal:.3f} kcal/mol at {samples.temperature_K:g} K"
        + ("" if result["reliable"] else "; NOT RELIABLE, see the warnings above")
    )
    record: dict[str, Any] = {
        "source": str(args.source),
        "system": system_name,
        "temperature_K": samples.temperature_K,
        "state_a": state_a.definition,
        "state_b": state_b.definition,
        "collective_variables": list(args.cv),
        **result,
        "delta_f_kcal_per_mol": value * kcal,
        "error_kcal_per_mol": error * kcal,
        "n_bootstrap": args.bootstrap,
        "seed": args.seed,
        "n_requested": samples.n_requested,
        "n_written": samples.n_written,
        "n_out_of_domain": samples.n_out_of_domain,
        "energy_evaluations": samples.energy_evaluations,
        "reference": None,
    }
    if reference is not None:
        deviation = value - reference["delta_f_kT"]
        combined = math.hypot(error, reference["error_kT"])
        print(
            f"reference             {reference['delta_f_kT']:.3f} +- {reference['error_kT']:.3f} kT ({Path(reference['file']).name}); "
            f"deviation {deviation:+.3f} kT" + (f" = {deviation / combined:+.1f} combined standard errors" if 0 < combined < math.inf else "")
        )
        record["reference"] = {"delta_f_kT": reference["delta_f_kT"], "error_kT": reference["error_kT"], "file": reference["file"], "deviation_kT": deviation}
    if args.md_a:
        record["two_sided"] = _two_sided(args, generator, topology, samples, (state_a, state_b), (in_a, in_b), names, result, kcal)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=1) + "\n")
        print(f"numbers written to    {args.output}")
    return 0
