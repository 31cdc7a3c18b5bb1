"""How the cost of a whole-molecule generator grows with the molecule: 22 atoms against 218 and 596.

For ``ala2-vacuum`` (22 atoms), ``trpzip2-implicit`` (218 atoms, amber14 + GBn2) and, where
pdbfixer ships its test copy of 1VII, the villin headpiece (596 atoms with hydrogens,
amber14 + GBn2, no constraints, loaded as a user's own PDB), each in
a fresh process (so that peak memory is the system's own), it builds the package's default
molecular generator (:func:`openmm_bg.generator.recipes.molecular_generator_from_data`, spline
couplings) and times, side by side:

* one training step by example and energy (ML + KL, batch ``--batch``, energies through the
  OpenMM bridge in this process, ``--workers 0``, or through that many worker processes);
* drawing 1,000 samples with their energies and weights;
* one proposal of :class:`openmm_bg.moves.BoltzmannGeneratorMove` (``--proposals`` per apply);

and prints the peak resident memory of each process, with the ratio of each to the 22-atom
figure.  The generator is untrained (timings do not depend on its weights); the frames
that fit its normalisation are the system's structure with 0.005 nm noise.  All figures are
machine- and load-dependent.

    python -m benchmarks.scaling                 # both systems, one torch thread
    python -m benchmarks.scaling --workers 2     # energies on two worker processes
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SYSTEMS = ("ala2-vacuum", "trpzip2-implicit", "villin-implicit")


def villin_pdb() -> str | None:
    """pdbfixer's test copy of the villin headpiece (1VII, 596 atoms with hydrogens), or None."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("pdbfixer")
    path = os.path.join(os.path.dirname(spec.origin), "tests", "data", "test.pdb") if spec else ""
    return path if os.path.exists(path) else None


def load(system: str):
    """The registered system, or villin built from pdbfixer's copy like trpzip2-implicit."""
    from openmm_bg.molecules import get_system, load_system

    if system != "villin-implicit":
        return get_system(system)
    return load_system(villin_pdb(), forcefield=["amber14-all.xml", "implicit/gbn2.xml"], platform="CPU", name="villin-implicit")


def measure(system: str, batch: int, steps: int, proposals: int, applies: int, workers: int) -> dict:
    import numpy as np
    import openmm
    import openmm.unit as unit
    import torch
    from openmmtools import cache, states

    from openmm_bg.energies.openmm_bridge import OpenMMEnergy
    from openmm_bg.generator.recipes import molecular_generator_from_data
    from openmm_bg.moves import BoltzmannGeneratorMove
    from openmm_bg.training.trainer import Trainer, TrainingConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    mol = load(system)
    rng = np.random.default_rng(0)
    frames = mol.positions[None] + 0.005 * rng.standard_normal((64, mol.n_atoms, 3))
    energy = OpenMMEnergy(mol.system, mol.temperature, platform=mol.platform, n_workers=workers)
    generator, _ = molecular_generator_from_data(mol.topology, frames, energy, coupling="spline")
    generator = generator.float()
    data = torch.as_tensor(frames, dtype=torch.float32)
    config = TrainingConfig(n_iterations=steps, batch_size=batch, kl_batch_size=batch, w_ml=1.0, w_kl=1.0, seed=0, nonfinite="drop")
    trainer = Trainer(generator, config, data=data)
    t0 = time.perf_counter()
    trainer.train(progress=False)
    train = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    with torch.no_grad():
        generator.sample(1000, generator=torch.Generator().manual_seed(1))
    sample = time.perf_counter() - t0
    thermo = states.ThermodynamicState(mol.system, mol.temperature * unit.kelvin)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(mol.platform))
    move = BoltzmannGeneratorMove(generator, n_proposals=proposals, seed=0)
    sampler = states.SamplerState(mol.positions * unit.nanometer)
    move.apply(thermo, sampler, context_cache)  # builds the Context
    t0 = time.perf_counter()
    for _ in range(applies):
        move.apply(thermo, sampler, context_cache)
    proposal = (time.perf_counter() - t0) / (applies * proposals)
    if hasattr(energy, "close"):
        energy.close()
    return {"system": system, "atoms": mol.n_atoms, "coordinates": generator.prior.dim, "platform": mol.platform,
            "seconds_per_training_step": train, "seconds_per_1000_samples": sample, "seconds_per_move_proposal": proposal,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="training batch (ML and KL), default 256")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed (default 5)")
    parser.add_argument("--proposals", type=int, default=10)
    parser.add_argument("--applies", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="energy worker processes (default 0: in process)")
    parser.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.batch, args.steps, args.proposals, args.applies, args.workers)))
        return 0
    rows = []
    systems = [s for s in SYSTEMS if s != "villin-implicit" or villin_pdb()]
    if len(systems) < len(SYSTEMS):
        print("villin-implicit: skipped (pdbfixer's test copy of 1VII not found)")
    for system in systems:
        child = [sys.executable, "-m", "benchmarks.scaling", "--one", system, "--batch", str(args.batch), "--steps", str(args.steps),
                 "--proposals", str(args.proposals), "--applies", str(args.applies), "--workers", str(args.workers)]
        out = subprocess.run(child, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{system}: failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = [("seconds_per_training_step", "s / training step (ML+KL, batch %d)" % args.batch, "%.3f"),
            ("seconds_per_1000_samples", "s / 1000 samples with energies", "%.2f"),
            ("seconds_per_move_proposal", "ms / BG-move proposal", None),
            ("peak_rss_mb", "peak memory, MB", "%.0f")]
    a = rows[0]
    header = "".join(f"{r['system'] + ' (%d atoms)' % r['atoms']:>30s}" for r in rows)
    print(f"{'':40s}{header}" + "".join(f"{'ratio %d/%d' % (r['atoms'], a['atoms']):>14s}" for r in rows[1:]))
    for key, label, fmt in keys:
        cells = [f"{1000 * r[key]:.2f}" if fmt is None else fmt % r[key] for r in rows]
        print(f"{label:40s}" + "".join(f"{c:>30s}" for c in cells) + "".join(f"{r[key] / a[key]:14.1f}" for r in rows[1:]))
    print(f"coordinates: {', '.join(str(r['coordinates']) for r in rows)}; platforms {', '.join(r['platform'] for r in rows)}; "
          f"one torch thread; energy workers {args.workers}; machine- and load-dependent")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"settings": vars(args), "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
