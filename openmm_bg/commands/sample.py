"""``openmm-bg sample``: draw importance-weighted samples from a checkpoint and write them to a folder.

The files are described in :mod:`openmm_bg.sampling.samples`.  A checkpoint written by
``openmm-bg train`` carries its molecule: ``openmm-bg sample generator.pt`` needs no
--system or --structure, and one given must match the molecule carried.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_system_arguments, add_threads_argument, hamiltonian_keywords, reporting_hamiltonian, requested_threads, sampling_threads

__all__ = ["configure", "run", "add_system_arguments"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``openmm-bg sample``."""
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="generator checkpoint (.pt), e.g. from openmm-bg train")
    parser.add_argument("-n", "--n-samples", type=int, required=True, metavar="N", help="number of samples to draw")
    parser.add_argument("--output", "-o", type=Path, default=Path("openmm-bg-samples"), help="output folder (default ./openmm-bg-samples)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draws (default 0)")
    parser.add_argument("--batch-size", type=int, default=10000, help="samples per batch (default 10000)")
    add_system_arguments(parser, hamiltonian=True)
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run ``openmm-bg sample``; return the exit status."""
    import numpy as np

    from ..sampling import SAMPLE_FILES, draw_samples, load_checkpoint, report_lines, save_samples

    if args.n_samples < 1 or args.batch_size < 1:
        raise ValueError(f"-n and --batch-size must be positive, got {args.n_samples} and {args.batch_size}")
    requested_threads(args)
    generator, molecule, temperature, _ = reporting_hamiltonian(
        "sample",
        lambda: load_checkpoint(args.checkpoint, system=args.system, structure=args.structure, system_file=args.system_file, **hamiltonian_keywords(args)),
        own_files=args.structure is not None, describe=lambda loaded: loaded[1].description,
    )
    with sampling_threads(args, generator):
        samples = draw_samples(
            generator, args.n_samples, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
            system=molecule.name, temperature_K=temperature,
        )
    box = None if molecule.box_vectors is None else np.diag(molecule.box_vectors)
    paths = save_samples(samples, args.output, molecule.topology, box_lengths=box, extra={"seed": args.seed, "batch_size": args.batch_size})
    for line in report_lines(samples):
        print(line)
    for key, path in paths.items():
        print(f"{SAMPLE_FILES[key]:<21} {path}")
    return 0
