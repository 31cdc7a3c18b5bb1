"""Energy+force evaluations per second: a naive Context loop against the OpenMM bridge.

For each system it times, interleaved over the repeats so that drifting load
from other users hits all variants alike:

* ``naive``: a Python loop over one Context (``setPositions``, ``getState``,
  ``value_in_unit``) on the platform the bridge picks, with OpenMM's default
  platform properties;
* ``bridge in-process``: ``OpenMMEnergy(n_workers=0).evaluate``;
* ``bridge 1 worker`` and ``bridge N workers`` (N = all cores): spawn workers
  with one CPU thread each, started before timing.

It prints the median time per evaluation, evaluations per second and the ratio
of each variant's throughput to the naive loop, then a platform table (the
naive loop on each CPU-side platform, including a 1.5k-atom PME water box as the
large system) that backs the automatic platform choice.

Run from the repository root::

    nice -n 19 python -m benchmarks.energy_throughput [--batch 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import openmm
from openmm import unit
from openmmtools import testsystems

from openmm_bg.energies import OpenMMEnergy, choose_platform

__all__ = ["SYSTEMS", "make_system", "naive_loop", "main"]

SYSTEMS = ("alanine-vacuum", "alanine-implicit", "dimer-wca")
#: a large system for the platform table only: about 1.5k atoms of TIP3P with PME
LARGE_SYSTEMS = ("water-box",)
#: configurations per timed call in the platform table
PLATFORM_BATCH = {"water-box": 10}


def make_system(name: str, batch: int, seed: int = 0) -> tuple[openmm.System, np.ndarray]:
    """A test system and ``batch`` configurations near its relaxed structure.

    Returns
    -------
    system : openmm.System
    positions : ndarray, shape (batch, n_atoms, 3), float64, nm
    """
    if name == "alanine-vacuum":
        t = testsystems.AlanineDipeptideVacuum(constraints=None)
    elif name == "alanine-implicit":
        t = testsystems.AlanineDipeptideImplicit(constraints=None)
    elif name == "dimer-wca":
        t = testsystems.DoubleWellDimer_WCAFluid()
    elif name == "water-box":
        t = testsystems.WaterBox(box_edge=2.5 * unit.nanometer, constrained=False)
    else:
        raise ValueError(f"system must be one of {SYSTEMS + LARGE_SYSTEMS}, got {name!r}")
    context = openmm.Context(t.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(t.positions)
    # the dimer's lattice start has overlapping particles; relax so forces are typical
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    x0 = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    noise = 0.003 * np.random.default_rng(seed).standard_normal((batch,) + x0.shape)
    return t.system, x0 + noise


def naive_loop(system: openmm.System, platform: str, properties: dict[str, str] | None = None) -> Callable[[np.ndarray], None]:
    """A function that evaluates energies and forces of a batch with a plain loop over one Context."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform), properties or {})
    kj, kjnm = unit.kilojoule_per_mole, unit.kilojoule_per_mole / unit.nanometer

    def run(positions: np.ndarray) -> None:
        energies = np.empty(len(positions))
        forces = np.empty(positions.shape)
        for i, x in enumerate(positions):
            context.setPositions(x)
            state = context.getState(getEnergy=True, getForces=True)
            energies[i] = state.getPotentialEnergy().value_in_unit(kj)
            forces[i] = state.getForces(asNumpy=True).value_in_unit(kjnm)

    return run


def _time_interleaved(variants: dict[str, Callable[[np.ndarray], object]], positions: np.ndarray, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn(positions[:8])  # warm-up: worker start, Context creation, first-call caches
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(positions)
            times[name].append(time.perf_counter() - start)
    return times


def bench_system(name: str, batch: int, repeats: int, n_cores: int) -> None:
    """Print the bridge-versus-naive table for one system."""
    system, positions = make_system(name, batch)
    platform = choose_platform(system)
    energies = {
        "bridge in-process": OpenMMEnergy(system, 300.0),
        "bridge 1 worker": OpenMMEnergy(system, 300.0, n_workers=1, timeout=600),
        f"bridge {n_cores} workers": OpenMMEnergy(system, 300.0, n_workers=n_cores, timeout=600),
    }
    variants: dict[str, Callable[[np.ndarray], object]] = {"naive loop": naive_loop(system, platform)}
    variants.update({label: energy.evaluate for label, energy in energies.items()})
    start = time.perf_counter()
    times = _time_interleaved(variants, positions, repeats)
    total = time.perf_counter() - start
    naive = statistics.median(times["naive loop"])
    print(f"\n{name}: {system.getNumParticles()} particles, platform {platform}, batch {batch}, {repeats} repeats ({total:.1f} s)")
    print(f"  {'variant':<22}{'us/eval (median)':>18}{'us/eval (min)':>15}{'evals/s':>10}{'x naive':>9}")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"  {label:<22}{med / batch * 1e6:>18.1f}{min(ts) / batch * 1e6:>15.1f}{batch / med:>10.0f}{naive / med:>9.2f}")
    one_worker = energies["bridge 1 worker"]
    one_worker.worker_seconds = 0.0
    start = time.perf_counter()
    for _ in range(repeats):
        one_worker.evaluate(positions)
    transport_ms = (time.perf_counter() - start - one_worker.worker_seconds) / repeats * 1e3
    one = statistics.median(times["bridge 1 worker"])
    many = statistics.median(times[f"bridge {n_cores} workers"])
    print(f"  1-worker overhead over naive: {100 * (one / naive - 1):+.1f} % (target <= +15 %); "
          f"transport (call time minus worker compute): {transport_ms:.1f} ms per call of {batch}")
    for energy in energies.values():
        energy.close()
    cost_ms = naive / batch * 1e3
    verdict = "target >= 1.70 applies" if cost_ms >= 0.5 else "target applies only from 0.5 ms/eval"
    print(f"  {n_cores} workers vs naive: {naive / many:.2f}x at {cost_ms:.3f} ms/eval ({verdict})")


def bench_platforms(names: list[str], batch: int, repeats: int) -> None:
    """Print the naive loop's time per evaluation on each CPU-side platform."""
    configs = [("Reference", {}), ("CPU", {}), ("CPU", {"Threads": "1"})]
    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    configs = [(p, props) for p, props in configs if p in available]
    print("\nplatforms: naive loop, us per energy+force evaluation (median)")
    header = "".join(f"{p + (' ' + ','.join(f'{k}={v}' for k, v in props.items()) if props else ''):>20}" for p, props in configs)
    print(f"  {'system (particles)':<24}{header}{'auto choice':>14}")
    for name in names:
        system, positions = make_system(name, PLATFORM_BATCH.get(name, batch))
        batch_here = len(positions)
        variants = {f"{p}{props}": naive_loop(system, p, props) for p, props in configs}
        times = _time_interleaved(variants, positions, repeats)
        row = "".join(f"{statistics.median(ts) / batch_here * 1e6:>20.1f}" for ts in times.values())
        print(f"  {name + f' ({system.getNumParticles()})':<24}{row}{choose_platform(system):>14}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="configurations per call (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant (default 5)")
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--platform-systems", nargs="*", default=list(SYSTEMS + LARGE_SYSTEMS), choices=SYSTEMS + LARGE_SYSTEMS)
    parser.add_argument("--platform-batch", type=int, default=100, help="configurations per call in the platform table (default 100)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the parallel variant (default: all cores)")
    args = parser.parse_args(argv)
    print(f"openmm {openmm.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    for name in args.systems:
        bench_system(name, args.batch, args.repeats, args.workers)
    if args.platform_systems:
        bench_platforms(args.platform_systems, args.platform_batch, args.repeats)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
