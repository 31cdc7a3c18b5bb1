"""Torch threads: milliseconds per step at one thread, at all cores and at the automatic choice, idle and busy.

Two workloads of the demo's spline generator for alanine dipeptide in vacuum
(``openmm_bg.recipes.demo.DEFAULT_ARCHITECTURE``, its normalisation fitted to the
bundled MD frames):

* ``train``: one ``Trainer`` step by example at batch 512, as the demo's first stage
  (``DEFAULT_ML``) makes them;
* ``sample``: one weighted sampling batch, energies included, of ``--sample-batch``
  samples (default 1000), as ``openmm-bg sample`` draws them.

Each runs in two scenarios: ``idle``, the machine as it is (its load average is
printed: other users may be running), and ``busy``, next to a process that this
benchmark starts, which spins a numpy loop on one core, and stops.  In each, the
automatic choice (:func:`openmm_bg.training.threads.choose_torch_threads`, as the
commands call it) picks a count first; then one thread and all cores are timed,
interleaved, one warm-up each and the median of ``--repeats``.  The automatic
column is the time at the count it picked, and the seconds the choice took.  Ratios
are to the faster of the two.

Run from the repository root::

    python -m benchmarks.threads [--repeats 5] [--sample-batch 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Iterator

import torch

__all__ = ["busy_core", "workloads", "main"]

#: the competing job: one numpy thread, values kept in [1, 2] (no subnormals), ends by itself
_SPIN = """
import sys, time
import numpy as np
x = np.random.default_rng(0).random(1 << 16) + 1.0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    np.sin(x, out=x)
    np.add(x, 1.0, out=x)
"""


@contextlib.contextmanager
def busy_core(seconds: float = 900.0) -> Iterator[subprocess.Popen]:
    """A process spinning numpy on one core for the block (at most ``seconds``: it ends itself if left behind)."""
    one_thread = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    process = subprocess.Popen([sys.executable, "-c", _SPIN, str(seconds)], env={**os.environ, **one_thread})
    try:
        time.sleep(0.5)  # let it reach its loop
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def workloads(sample_batch: int) -> dict[str, Callable[[], object]]:
    """The demo generator's training step (batch 512) and a weighted sampling batch of ``sample_batch``."""
    import warnings

    from openmm_bg.energies import OpenMMEnergy
    from openmm_bg.generator.recipes import molecular_generator_from_data
    from openmm_bg.molecules.systems import get_system
    from openmm_bg.recipes.demo import DEFAULT_ARCHITECTURE, DEFAULT_ML
    from openmm_bg.reference import DATA_DIR
    from openmm_bg.training.recipe import load_training_frames, seeded_parameters
    from openmm_bg.training.trainer import Trainer, TrainingConfig

    molecule = get_system("ala2-vacuum")
    frames = load_training_frames(molecule, [(DATA_DIR / "ala2-vacuum-300K-md.dcd", 1)])
    energy = OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform)
    generator = seeded_parameters(
        lambda: molecular_generator_from_data(molecule.topology, frames.positions, energy, system=molecule.system, **DEFAULT_ARCHITECTURE)[0], 0
    )
    config = TrainingConfig(**{**DEFAULT_ML, "n_iterations": 10**6})
    trainer = Trainer(generator, config, data=torch.as_tensor(frames.positions, dtype=torch.float64))
    rng = torch.Generator().manual_seed(0)

    def train():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trainer.step()

    return {f"train (batch {config.batch_size})": train, f"sample ({sample_batch})": lambda: generator.sample(sample_batch, generator=rng)}


def _time_interleaved(fn: Callable[[], object], counts: list[int], repeats: int) -> dict[int, float]:
    """Median seconds of ``fn`` at each thread count, one warm-up each, the counts interleaved."""
    times: dict[int, list[float]] = {n: [] for n in counts}
    previous = torch.get_num_threads()
    try:
        for n in counts:
            torch.set_num_threads(n)
            fn()
        for _ in range(repeats):
            for n in counts:
                torch.set_num_threads(n)
                start = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {n: statistics.median(values) for n, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    """Time every workload in both scenarios and print the table."""
    from openmm_bg.training.threads import available_cores, choose_torch_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per thread count (default 5)")
    parser.add_argument("--sample-batch", type=int, default=1000, help="samples in the sampling batch (default 1000)")
    args = parser.parse_args(argv)
    cores = available_cores()
    if cores < 2:
        print(f"{cores} core available: one thread is the only choice; nothing to compare")
        return
    counts = [1, cores]
    jobs = workloads(args.sample_batch)
    print(f"torch {torch.__version__}, {cores} cores, load average {os.getloadavg()[0]:.2f} at start; median of {args.repeats}, ms per step")
    if os.environ.get("OMP_NUM_THREADS"):
        print(f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} is set; the automatic choice here measures regardless)")
    header = f"{'scenario':<9}{'workload':<20}{'1 thread':>10}{f'{cores} threads':>11}{'auto':>16}{'choice took':>13}   {'1 : all cores : auto (to the faster)'}"
    print(header)
    for scenario in ("idle", "busy"):
        with busy_core() if scenario == "busy" else contextlib.nullcontext():
            for name, fn in jobs.items():
                start = time.perf_counter()
                choice = choose_torch_threads(fn, environ={})  # as the commands choose, the environment aside
                took = time.perf_counter() - start
                seconds = _time_interleaved(fn, counts, args.repeats)
                best = min(seconds.values())
                ms = {n: 1000 * s for n, s in seconds.items()}
                auto = f"{ms[choice.n_threads]:.0f} ({choice.n_threads} thr)"
                ratios = " : ".join(f"{seconds[n] / best:.2f}" for n in (1, cores, choice.n_threads))
                print(f"{scenario:<9}{name:<20}{ms[1]:>10.0f}{ms[cores]:>11.0f}{auto:>16}{took:>11.2f} s   {ratios}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
