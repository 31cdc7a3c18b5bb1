"""Acceptance of local generator moves against the number of coordinates they regenerate.

On an all-atom molecule (default ``trpzip2-implicit``, 218 atoms, amber14 + GBn2, no
constraints, 300 K), for fragments of growing size (side chains, a terminal segment), it

1. builds a local generator of the fragment's internal coordinates
   (:func:`openmm_bg.moves.local_generator_from_data`) and trains it by example on the
   fragment in MD frames (the first half of the trajectory; a fifth of it held out to keep
   the parameters with the best held-out likelihood);
2. runs :class:`openmm_bg.moves.LocalGeneratorMove` from frames of the second half (held
   out), ``--applies`` applications of ``--proposals`` proposals each, rest fixed;

and prints, side by side, the fragment's atoms and coordinates, the acceptance with its
95 % binomial range, and the cost per proposal and per training step.  For comparison it
prints the acceptance of a whole-molecule proposal of the same kind on alanine dipeptide
when ``--ala2-generator`` names one (e.g. the demo's ``generator.pt``).

The MD frames come from the package's own command, e.g.::

    openmm-bg simulate --system trpzip2-implicit -o runs/trpzip2-md/md.dcd --frames 300 \\
        --steps-per-frame 200 --timestep 0.001 --equilibration-steps 2000 --seed 11
    nice -n 5 python -m benchmarks.local_moves runs/trpzip2-md/md.dcd

Results go to ``--output`` (default ``benchmarks/results/local-moves/results.json``) with
the settings, so the figures can be re-checked with a fresh ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import torch

#: fragments of trpzip2 (SWTWENGKWTWK), residue indices from 0, in growing size
TRPZIP2_FRAGMENTS = {
    "Ser1 hydroxyl H": "resid 0 and name HG",
    "Ser1 side chain": "resid 0 and sidechain",
    "Thr3 side chain": "resid 2 and sidechain",
    "Glu5 side chain": "resid 4 and sidechain",
    "Lys8 side chain": "resid 7 and sidechain",
    "Trp4 side chain": "resid 3 and sidechain",
    "C-terminal Lys12": "resid 11",
    "C-terminal Trp11-Lys12": "resid 10 to 11",
}


def binomial_range(k: int, n: int) -> tuple[float, float]:
    """95 % Clopper-Pearson range of a proportion ``k / n``."""
    from scipy import stats

    lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
    return float(lo), float(hi)


def measure(molecule, frames: np.ndarray, name: str, selection: str, args) -> dict:
    from openmmtools import cache, states

    from openmm_bg.moves import LocalGeneratorMove, local_generator_from_data
    from openmm_bg.training.trainer import Trainer, TrainingConfig

    half = len(frames) // 2
    # the networks' initial weights come from torch's global generator: seed it per fragment
    torch.manual_seed(args.seed + sum(map(ord, name)))
    generator, _, q = local_generator_from_data(molecule.topology, frames[:half], selection, system=molecule.system,
                                                n_blocks=args.blocks, hidden=[args.hidden] * 2)
    # a few hundred frames over-fit within a few hundred steps (held-out log density falls by
    # ~100 nats on a side chain): keep the parameters with the best held-out likelihood
    n_val = max(1, len(q) // 5)
    t0 = time.perf_counter()
    config = TrainingConfig(n_iterations=args.iterations, batch_size=min(256, len(q) - n_val), w_ml=1.0, seed=args.seed, keep="best")
    Trainer(generator, config, data=q[n_val:], validation_data=q[:n_val]).train(progress=False)
    train_time = (time.perf_counter() - t0) / args.iterations
    thermo = states.ThermodynamicState(molecule.system, args.temperature * unit.kelvin)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(args.platform))
    move = LocalGeneratorMove(generator, n_proposals=args.proposals, seed=args.seed)
    starts = np.linspace(half, len(frames) - 1, args.starts).astype(int)
    t0 = time.perf_counter()
    for start in starts:
        sampler = states.SamplerState(frames[start].astype(np.float64) * unit.nanometer)
        for _ in range(args.applies):
            move.apply(thermo, sampler, context_cache)
    proposal_time = (time.perf_counter() - t0) / move.n_proposed
    stats = move.statistics
    lo, hi = binomial_range(stats["n_accepted"], stats["n_proposed"])
    return {"fragment": name, "selection": selection, "atoms": len(move.moved_atoms), "coordinates": 3 * len(move.moved_atoms),
            "acceptance": move.acceptance_rate, "acceptance_95": [lo, hi], **stats,
            "seconds_per_proposal": proposal_time, "seconds_per_training_step": train_time}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectory", type=Path, help="MD of the system (training: first half; starts: second half)")
    parser.add_argument("--system", default="trpzip2-implicit")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--iterations", type=int, default=1000, help="training steps by example per fragment (default 1000)")
    parser.add_argument("--blocks", type=int, default=1, help="coupling blocks (default 1: with a few hundred frames, larger flows over-fit)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden width (default 16)")
    parser.add_argument("--proposals", type=int, default=20, help="per application (default 20)")
    parser.add_argument("--applies", type=int, default=10, help="applications per starting frame (default 10)")
    parser.add_argument("--starts", type=int, default=10, help="starting frames from the held-out half (default 10)")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="fragment names to run (default all)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/local-moves/results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from openmm_bg.molecules import get_system
    from openmm_bg.molecules.trajectories import load_trajectory

    molecule = get_system(args.system)
    frames = load_trajectory(args.trajectory, molecule.topology)
    fragments = {k: v for k, v in TRPZIP2_FRAGMENTS.items() if args.only is None or k in args.only}
    rows = []
    print(f"{args.system}: {molecule.n_atoms} atoms, {len(frames)} MD frames ({len(frames) // 2} for training), {args.temperature:g} K")
    print(f"{'fragment':26s} {'atoms':>5s} {'coords':>6s} {'acceptance':>11s} {'95 % range':>17s} {'ms/proposal':>12s} {'ms/train step':>14s}")
    for name, selection in fragments.items():
        try:
            row = measure(molecule, frames, name, selection, args)
        except ValueError as error:
            print(f"{name:26s} refused: {error}")
            rows.append({"fragment": name, "selection": selection, "refused": str(error)})
            continue
        rows.append(row)
        lo, hi = row["acceptance_95"]
        print(f"{name:26s} {row['atoms']:5d} {row['coordinates']:6d} {100 * row['acceptance']:10.2f}% {100 * lo:7.2f}-{100 * hi:6.2f} % "
              f"{1000 * row['seconds_per_proposal']:12.2f} {1000 * row['seconds_per_training_step']:14.1f}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.output.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    print(f"written {args.output} (timings are machine-dependent; acceptances depend on the seed within their ranges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
