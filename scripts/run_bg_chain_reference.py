"""An exact reference for F(B) - F(A) from the package's own exact chain: BG moves mixed with GHMC.

Each cycle applies Metropolized dynamics (``SeededGHMCMove``: velocities redrawn, then
``--ghmc-steps`` GHMC steps, exact whatever the time step) and then a
``BoltzmannGeneratorMove`` (``--proposals`` independence Metropolis-Hastings proposals
from a trained generator, accepted with the full ratio).  Both moves leave the Boltzmann
distribution invariant, so the chain is exact whatever the generator's quality; the
generator only sets how fast it crosses between the states.

Independent repeats (``--repeats``, seeds ``--seed + r``) grow together in rounds of
``--round`` cycles.  Each repeat keeps in ``OUT/repeat{r}.npz``, written after every round
(atomically): the molecule's collective variables after each cycle (float32; ``cv_phi``,
``cv_psi`` for alanine dipeptide), the last configuration (float64 nm), the move statistics
and, per round, the SHA-256 of the generator that made it.  These files are small (8 bytes
a cycle for alanine dipeptide), so OUT can live in the repository and be committed: the run
resumes where it stopped, in this session or a later one, on another machine, and with
another generator if need be (any generator keeps the chain exact; only the mixing
changes).  A file ``STOP`` in ``OUT`` ends the run after the current round.  The random
streams of a round derive from ``(seed + r, cycles done)``, so a resumed run is the run
that did not stop.

``--analyze`` prints, per repeat and combined, ``dF = -ln(P_B / P_A)`` with a block
bootstrap error (blocks of ``--block`` cycles), the spread over repeats, the acceptances
and the energy evaluations (``ghmc_steps + proposals + 1`` per cycle).

Example (ala2-vacuum, the demo's generator)::

    openmm-bg demo --output runs/demo
    nice -n 5 python scripts/run_bg_chain_reference.py runs/demo/generator.pt runs/bg-chain --repeats 4 --cycles 20000
    python scripts/run_bg_chain_reference.py runs/demo/generator.pt runs/bg-chain --analyze
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np


def _save(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_repeat(path: Path, molecule) -> dict:
    """A repeat's record: ``cvs`` (name -> float32 array, one value a cycle), ``last``, ``stats``, ``generators``.

    Reads the first format too, which kept every configuration (``frames``).
    """
    stored = dict(np.load(path))
    if "frames" in stored:
        frames = stored["frames"].astype(np.float64)
        cvs = {name: np.asarray(cv(frames), dtype=np.float32) for name, cv in molecule.collective_variables.items()}
        return {"cvs": cvs, "last": frames[-1], "stats": stored["stats"].astype(np.int64), "generators": []}
    cvs = {key[3:]: value for key, value in stored.items() if key.startswith("cv_")}
    return {"cvs": cvs, "last": stored["last"], "stats": stored["stats"].astype(np.int64), "generators": [str(g) for g in stored["generators"]]}


def _cycles(record: dict) -> int:
    return len(next(iter(record["cvs"].values()))) if record["cvs"] else 0


def run_round(args, molecule, generator, generator_hash: str, repeat: int, target: int) -> int:
    """Grow repeat ``repeat`` to ``target`` cycles; returns the cycles it holds."""
    import openmm.unit as unit
    from openmmtools import cache, states

    from openmm_bg.moves import BoltzmannGeneratorMove
    from openmm_bg.simulation import SeededGHMCMove, derive_seed

    path = args.out / f"repeat{repeat}.npz"
    if path.exists():
        record = read_repeat(path, molecule)
    else:
        record = {"cvs": {name: np.zeros(0, dtype=np.float32) for name in molecule.collective_variables}, "last": molecule.positions,
                  "stats": np.zeros(4, dtype=np.int64), "generators": []}
    start, stats = np.asarray(record["last"], dtype=np.float64), record["stats"]
    done = _cycles(record)
    if done >= target:
        return done
    seed = derive_seed(args.seed + repeat, done)
    ghmc = SeededGHMCMove(timestep=args.timestep, collision_rate=args.collision_rate, n_steps=args.ghmc_steps, seed=seed)
    bg = BoltzmannGeneratorMove(generator, n_proposals=args.proposals, seed=seed)
    thermodynamic_state = states.ThermodynamicState(molecule.system, molecule.temperature * unit.kelvin)
    sampler_state = states.SamplerState(np.asarray(start) * unit.nanometer)
    import openmm

    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(molecule.platform), capacity=4)
    frames = []
    for _ in range(target - done):
        ghmc.apply(thermodynamic_state, sampler_state, context_cache)
        bg.apply(thermodynamic_state, sampler_state, context_cache)
        frames.append(sampler_state.positions.value_in_unit(unit.nanometer))
    frames = np.asarray(frames, dtype=np.float64)
    statistics = bg.statistics
    stats = stats + np.array([ghmc.n_accepted, ghmc.n_proposed, statistics["n_accepted"], statistics["n_proposed"]], dtype=np.int64)
    cvs = {f"cv_{name}": np.concatenate([record["cvs"][name], np.asarray(cv(frames), dtype=np.float32)])
           for name, cv in molecule.collective_variables.items()}
    generators = record["generators"] + [f"{done}-{target}:{generator_hash}"]
    _save(path, **cvs, last=frames[-1], stats=stats, generators=np.asarray(generators))
    return target


def block_bootstrap(in_a: np.ndarray, in_b: np.ndarray, block: int, n: int, rng: np.random.Generator) -> float:
    """Standard deviation of -ln(n_B / n_A) over resamples of whole blocks of cycles."""
    n_blocks = len(in_a) // block
    a = in_a[: n_blocks * block].reshape(n_blocks, block).sum(axis=1)
    b = in_b[: n_blocks * block].reshape(n_blocks, block).sum(axis=1)
    values = []
    for _ in range(n):
        pick = rng.integers(0, n_blocks, n_blocks)
        na, nb = a[pick].sum(), b[pick].sum()
        values.append(math.inf if na == 0 or nb == 0 else -math.log(nb / na))
    values = np.asarray(values)
    return float(values.std()) if np.isfinite(values).all() else math.inf


def analyze(args, molecule) -> dict:
    from openmm_bg.molecules.states import parse_state

    state_a = parse_state(args.state_a, molecule.collective_variables, molecule.states)
    state_b = parse_state(args.state_b, molecule.collective_variables, molecule.states)
    rows = []
    per_cycle = args.ghmc_steps + args.proposals + 1
    for repeat in range(args.repeats):
        path = args.out / f"repeat{repeat}.npz"
        if not path.exists():
            continue
        record = read_repeat(path, molecule)
        stats, n = record["stats"], _cycles(record)
        # the states are expressions over the collective variables: evaluate them on the stored values
        cache = {name: values.astype(np.float64) for name, values in record["cvs"].items()}
        in_a, in_b = (state.evaluate(np.zeros((n, 0, 3)), dict(cache)) for state in (state_a, state_b))
        frames = np.zeros(n)
        if not in_a.any() or not in_b.any():
            print(f"repeat {repeat}: {n} cycles, a state was never visited; no estimate")
            continue
        delta_f = -math.log(in_b.sum() / in_a.sum())
        error = block_bootstrap(in_a, in_b, args.block, 200, np.random.default_rng(repeat))
        transitions = int(np.sum(in_b[1:] != in_b[:-1]))
        rows.append({"repeat": repeat, "cycles": len(frames), "delta_f": delta_f, "error": error, "transitions": transitions,
                     "ghmc_acceptance": stats[0] / max(stats[1], 1), "bg_acceptance": stats[2] / max(stats[3], 1),
                     "evaluations": len(frames) * per_cycle})
        print(f"repeat {repeat}: {len(frames)} cycles, dF {delta_f:.3f} +- {error:.3f} kT (block bootstrap), "
              f"{transitions} changes of state, GHMC acceptance {rows[-1]['ghmc_acceptance']:.3f}, BG acceptance {rows[-1]['bg_acceptance']:.4f}")
    if not rows:
        return {}
    values = np.array([r["delta_f"] for r in rows])
    errors = np.array([r["error"] for r in rows])
    if not np.isfinite(errors).all():
        print("a repeat's block bootstrap emptied a state: the repeats are too short for an error; combining them unweighted")
        errors = np.ones_like(errors) * math.inf
    weights = 1.0 / errors**2 if np.isfinite(errors).all() else np.ones_like(errors)
    combined = float((weights * values).sum() / weights.sum())
    spread = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    bootstrap = float(1.0 / math.sqrt(weights.sum())) if np.isfinite(errors).all() else math.inf
    total = sum(r["evaluations"] for r in rows)
    print(f"combined: dF {combined:.3f} kT; error {max(spread, bootstrap) if len(values) > 1 else bootstrap:.3f} kT "
          f"(the larger of the standard error over {len(values)} repeats, {spread:.3f}, and the combined block bootstrap, {bootstrap:.3f}); "
          f"{total:,} energy evaluations")
    return {"repeats": rows, "delta_f_kT": combined, "error_repeats_kT": spread, "error_bootstrap_kT": bootstrap, "energy_evaluations": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", type=Path, help="a generator checkpoint that carries its molecule (openmm-bg demo/train)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=20000, help="per repeat")
    parser.add_argument("--round", type=int, default=500, help="cycles per repeat and round (a save each)")
    parser.add_argument("--ghmc-steps", type=int, default=200)
    parser.add_argument("--timestep", type=float, default=0.001, help="ps")
    parser.add_argument("--collision-rate", type=float, default=10.0, help="1/ps")
    parser.add_argument("--proposals", type=int, default=10, help="BG proposals per cycle")
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--state-a", default="phi_negative")
    parser.add_argument("--state-b", default="phi_positive")
    parser.add_argument("--block", type=int, default=100, help="cycles per bootstrap block (--analyze)")
    parser.add_argument("--analyze", action="store_true", help="print the estimates from what is stored and exit")
    args = parser.parse_args()

    import torch

    from openmm_bg.sampling import load_checkpoint

    torch.set_num_threads(1)
    generator, molecule, _, _ = load_checkpoint(args.generator)
    generator_hash = hashlib.sha256(args.generator.read_bytes()).hexdigest()[:16]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.analyze:
        result = analyze(args, molecule)
        (args.out / "analysis.json").write_text(json.dumps(result, indent=1))
        return
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "settings.json").write_text(json.dumps(settings, indent=1))
    grow_in_rounds(args.out, range(args.repeats), args.cycles, args.round,
                   lambda r, target: f"holds {run_round(args, molecule, generator, generator_hash, r, target)} cycles")

if __name__ == "__main__":
    main()
