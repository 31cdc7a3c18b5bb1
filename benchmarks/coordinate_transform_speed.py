"""Time the internal-coordinate transform on a batch of alanine dipeptide frames, next to RealNVP.

For a batch of alanine dipeptide configurations (default 10,000; the crystal
structure of openmmtools' ``AlanineDipeptideVacuum`` plus 0.005 nm Gaussian
noise, seeded) it prints the median wall time of

* the internal-coordinate transform: forward (Cartesian -> internal), inverse,
  and forward plus inverse;
* one pass of ``openmm_bg.flows.real_nvp(66, n_blocks=4, hidden=(128, 128))``
  in each direction on the same batch;

without gradients and with a backward pass through the result, in float32
and float64, and the ratio transform / RealNVP.

Run::

    nice -n 19 python -m benchmarks.coordinate_transform_speed [--batch 10000] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import Tensor

__all__ = ["parse_args", "main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: batch size, repeats, torch threads, seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000, help="number of frames (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure; the median is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator and first-call overheads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _with_backward(fn: Callable[[Tensor], tuple], source: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        leaf = source.detach().requires_grad_(True)
        out, ladj = fn(leaf)
        (out.sum() + ladj.sum()).backward()

    return run



def main(args: argparse.Namespace) -> None:
    """Build the inputs, time every case, print a table with ratios."""
    from openmmtools import testsystems
    from openmm import unit

    from openmm_bg.coordinates import InternalCoordinateTransform
    from openmm_bg.flows import real_nvp

    torch.set_num_threads(args.threads)
    test_system = testsystems.AlanineDipeptideVacuum(constraints=None)
    reference = torch.tensor(test_system.positions.value_in_unit(unit.nanometer), dtype=torch.float64)
    generator = torch.Generator().manual_seed(args.seed)
    frames = reference + 0.005 * torch.randn(args.batch, *reference.shape, generator=generator, dtype=torch.float64)
    transform = InternalCoordinateTransform.from_topology(test_system.topology)
    flow = real_nvp(transform.dim, n_blocks=4, hidden=(128, 128))

    print(f"batch {args.batch} alanine dipeptide frames ({transform.n_atoms} atoms, {transform.dim} internal coordinates), "
          f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    header = f"{'dtype':8s} {'mode':9s} {'IC forward':>11s} {'IC inverse':>11s} {'IC fwd+inv':>11s} {'NVP forward':>12s} {'NVP inverse':>12s} {'IC f+i / NVP f+i':>17s}"
    print(header)
    for dtype in (torch.float32, torch.float64):
        x = frames.to(dtype)
        q = transform.forward(x)[0]
        model = flow.to(dtype)
        for mode in ("no_grad", "backward"):
            if mode == "no_grad":
                with torch.no_grad():
                    t = {
                        "ic_f": _median_seconds(lambda: transform.forward(x), args.repeats),
                        "ic_i": _median_seconds(lambda: transform.inverse(q), args.repeats),
                        "nvp_f": _median_seconds(lambda: model.forward(q), args.repeats),
                        "nvp_i": _median_seconds(lambda: model.inverse(q), args.repeats),
                    }
            else:
                t = {
                    "ic_f": _median_seconds(_with_backward(transform.forward, x), args.repeats),
                    "ic_i": _median_seconds(_with_backward(transform.inverse, q), args.repeats),
                    "nvp_f": _median_seconds(_with_backward(model.forward, q), args.repeats),
                    "nvp_i": _median_seconds(_with_backward(model.inverse, q), args.repeats),
                }
            ic_both, nvp_both = t["ic_f"] + t["ic_i"], t["nvp_f"] + t["nvp_i"]
            print(
                f"{str(dtype).replace('torch.', ''):8s} {mode:9s} {1e3 * t['ic_f']:9.1f}ms {1e3 * t['ic_i']:9.1f}ms "
                f"{1e3 * ic_both:9.1f}ms {1e3 * t['nvp_f']:10.1f}ms {1e3 * t['nvp_i']:10.1f}ms {ic_both / nvp_both:17.2f}"
            )
    print(f"clamped events during the benchmark: {transform.clamp_counts}")


if __name__ == "__main__":
    main(parse_args())
