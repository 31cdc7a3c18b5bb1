"""Training-step throughput of our molecular flows against zuko's neural spline flow of the same size.

One training step is what a by-example step costs: the negative mean log density of a
batch (flow forward, log-determinant, prior), its backward pass and an AdamW step (as
:class:`openmm_bg.training.trainer.Trainer` uses).  The batch is drawn from the bundled
alanine dipeptide MD frames (``ala2-vacuum-300K-md.dcd``, 22 atoms, 60 internal
coordinates).  Contenders, all with the demo's size (``DEFAULT_ARCHITECTURE``:
``n_blocks`` blocks of two couplings, hidden widths, ``n_bins`` bins):

* ``IC+circ``: the circular-spline molecular flow, ``molecular_generator_from_data(...,
  coupling="circular-spline")``, on Cartesian positions: internal coordinates, then
  :func:`openmm_bg.flows.circular_spline`, torsions uniform in the prior;
* ``IC+spline``: the demo's default, ``coupling="spline"`` (torsions cut open onto R, then
  :func:`openmm_bg.flows.neural_spline`);
* ``IC+zuko``: our internal-coordinate layer followed by zuko's NSF;
* ``circ``: the bare ``circular_spline`` flow on the 60 normalised internal coordinates;
* ``zuko``: the bare ``zuko.flows.NSF`` on the same 60 coordinates, in its coupling form
  (``passes=2``: each transform conditions one half on the other, as ours do; zuko's
  default is autoregressive), ``transforms=2 * n_blocks``, the same hidden widths and bins.

Our flows start as the identity (zero last layers); zuko's do not, which costs nothing
here: the arithmetic of a step does not depend on the parameter values.
For every dtype, thread count and batch size the contenders run interleaved, round
after round (one warm-up round first), so that load from other jobs hits them alike;
a figure is the median over rounds of samples per second.  The ratios are ours / zuko's:
the issue's target is at least 2 in float32 for the default flow (``IC+spline / zuko``);
``IC+circ / IC+zuko`` and ``circ / zuko`` compare like with like.

zuko is a benchmark-only dependency (``pip install -e .[bench]``).

Run from the repository root::

    python -m benchmarks.flow_speed [--batch 512 1024] [--threads 1 2] [--rounds 7] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import Tensor

__all__ = ["parse_args", "contenders", "main"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: batch sizes, thread counts, dtypes, rounds, steps per round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[512], help="batch sizes (default 512)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts (default 1 2)")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds; the median is printed (default 7)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per contender per round (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _zuko_nsf(dim: int, architecture: dict):
    try:
        import zuko
    except ImportError as error:  # benchmark-only dependency
        raise SystemExit("zuko is needed for this benchmark: pip install -e .[bench]") from error
    return zuko.flows.NSF(
        features=dim, transforms=2 * architecture["n_blocks"], bins=architecture.get("n_bins", 8),
        hidden_features=tuple(architecture["hidden"]), passes=2,
    )


def contenders(seed: int = 0) -> tuple[dict[str, tuple[torch.nn.Module, Callable[[torch.nn.Module, Tensor], Tensor], str]], dict[str, Tensor], dict]:
    """The flows to time, their negative log-likelihood functions and the data they read.

    Returns
    -------
    flows : dict
        name -> (module, nll(module, batch) -> scalar, data key)
    data : dict
        ``"cartesian"`` (n_frames, 22, 3) nm and ``"internal"`` (n_frames, 60), float64
    architecture : dict
        The demo's architecture as used.
    """
    from openmm_bg.generator.recipes import molecular_generator_from_data
    from openmm_bg.molecules.systems import get_system
    from openmm_bg.recipes.demo import DEFAULT_ARCHITECTURE
    from openmm_bg.reference import DATA_DIR
    from openmm_bg.training.recipe import load_training_frames

    molecule = get_system("ala2-vacuum")
    frames = load_training_frames(molecule, [(DATA_DIR / "ala2-vacuum-300K-md.dcd", 1)])
    architecture = {"n_bins": 8, **{k: v for k, v in DEFAULT_ARCHITECTURE.items() if k != "coupling"}}
    built = {}
    for coupling in ("circular-spline", "spline"):
        torch.manual_seed(seed)
        built[coupling] = molecular_generator_from_data(molecule.topology, frames.positions, None, system=molecule.system, **{**architecture, "coupling": coupling})[0]
    default = built["circular-spline"]
    cartesian = torch.as_tensor(frames.positions, dtype=torch.float64)
    coordinates, bare = default.flow[0], default.flow[1]
    with torch.no_grad():
        internal = coordinates.forward(cartesian)[0]
    dim = internal.shape[1]
    torch.manual_seed(seed)
    zuko_bare = _zuko_nsf(dim, architecture)
    torch.manual_seed(seed)
    zuko_ic = torch.nn.ModuleDict({"coordinates": coordinates, "nsf": _zuko_nsf(dim, architecture)})
    prior = default.prior

    def generator_nll(module, x):
        return -module.log_prob(x).mean()

    def bare_nll(module, q):
        z, ladj = module.forward(q)
        return -(prior.log_prob(z) + ladj).mean()

    def zuko_nll(module, q):
        return -module().log_prob(q).mean()

    def zuko_ic_nll(module, x):
        q, ladj = module["coordinates"].forward(x)
        return -(module["nsf"]().log_prob(q) + ladj).mean()

    flows = {
        "IC+circ": (default, generator_nll, "cartesian"),
        "IC+spline": (built["spline"], generator_nll, "cartesian"),
        "IC+zuko": (zuko_ic, zuko_ic_nll, "cartesian"),
        "circ": (bare, bare_nll, "internal"),
        "zuko": (zuko_bare, zuko_nll, "internal"),
    }
    return flows, {"cartesian": cartesian, "internal": internal}, architecture


def _stepper(module: torch.nn.Module, nll: Callable, data: Tensor, batch: int, seed: int) -> Callable[[int], float]:
    """A function that makes ``n`` training steps and returns the seconds they took."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=1e-4)
    rng = torch.Generator().manual_seed(seed)

    def run(n: int) -> float:
        index = [torch.randint(0, data.shape[0], (batch,), generator=rng) for _ in range(n)]
        start = time.perf_counter()
        for i in index:
            loss = nll(module, data[i])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    return run


def main(args: argparse.Namespace) -> None:
    """Time every contender at every dtype, thread count and batch size; print samples/s and ratios."""
    flows, data, architecture = contenders(args.seed)
    names = list(flows)
    previous = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start; "
        f"architecture {architecture}; {data['internal'].shape[1]} internal coordinates; "
        f"samples/s, median of {args.rounds} rounds of {args.steps} steps"
    )
    ratios = {"IC+circ/zuko": ("IC+circ", "zuko"), "IC+circ/IC+zuko": ("IC+circ", "IC+zuko"), "circ/zuko": ("circ", "zuko"), "IC+spline/zuko": ("IC+spline", "zuko")}
    print(f"{'dtype':8s}{'thr':>4s}{'batch':>6s}" + "".join(f"{n:>11s}" for n in names) + "".join(f"{r:>17s}" for r in ratios))
    try:
        for dtype_name in args.dtype:
            dtype = DTYPES[dtype_name]
            for module, _, _ in flows.values():
                module.to(dtype)
            for threads in args.threads:
                torch.set_num_threads(threads)
                for batch in args.batch:
                    steppers = {name: _stepper(m, nll, data[key].to(dtype), batch, args.seed) for name, (m, nll, key) in flows.items()}
                    seconds: dict[str, list[float]] = {name: [] for name in names}
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        for name in names:  # warm-up: allocator, first calls
                            steppers[name](1)
                        for _ in range(args.rounds):
                            for name in names:
                                seconds[name].append(steppers[name](args.steps) / args.steps)
                    rate = {name: batch / statistics.median(values) for name, values in seconds.items()}
                    print(
                        f"{dtype_name:8s}{threads:>4d}{batch:>6d}" + "".join(f"{rate[n]:>11.0f}" for n in names)
                        + "".join(f"{rate[a] / rate[b]:>17.2f}" for a, b in ratios.values())
                    )
    finally:
        torch.set_num_threads(previous)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main(parse_args())
