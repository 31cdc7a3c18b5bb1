"""Folding reference of the C-alpha Go model of trpzip2: fraction folded and dF(unfolded - folded) against T.

Parallel tempering (openmmtools ``ReplicaExchangeSampler`` through
:func:`openmm_bg.simulation.tempering.run_parallel_tempering`) with Metropolized dynamics in
every replica (``SeededGHMCMove``: each step is accepted by Metropolis, so there is no
integrator bias at any time step; with 15 fs steps about 96 % are accepted).  Independent
repeats (seeds ``seed + r``) grow together in rounds of ``--round`` iterations, and running
the command again resumes them; a file ``STOP`` in the run folder ends the run after the
current round.  ``--analyze`` only reads the runs.

States are those of :data:`openmm_bg.molecules.go_model.GO_STATES` on the fraction of
native contacts Q.  At each temperature the script reports

* ``p_folded``, the fraction of configurations in the folded state, pooled over repeats
  after discarding ``--discard`` iterations of each;
* ``dF = -ln(p_unfolded / p_folded)`` in kT at that temperature;
* two errors of each: the standard error over the repeats, and a block bootstrap that
  resamples blocks of ``--block-factor`` statistical inefficiencies (pymbar.timeseries,
  on the folded indicator) within each repeat; the quoted error is the larger.

Results go to ``--results``: ``reference.json`` (settings, per-temperature figures and
per-repeat values), ``q.npz`` (Q per repeat, iteration and temperature, float32) and
``fraction_folded.png``.

``--md-check T`` instead runs plain GHMC MD at one temperature, ``--repeats`` repeats of
``--iterations`` x ``--steps`` steps from the native, as an independent check of the
tempering result there (``md_check_<T>K.json`` and ``.npz``).

Example (the results in benchmarks/results/go-model-reference/; see its README)::

    nice -n 10 python scripts/run_go_reference.py runs/go-model/reference \
        --repeats 4 --iterations 3000 --round 250 --seed 1800
    nice -n 10 python scripts/run_go_reference.py runs/go-model/reference \
        --md-check 305.78769216063904 --repeats 4 --iterations 4000 --seed 2800
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from openmm_bg.simulation.rounds import grow_in_rounds
from openmm_bg.molecules.go_model import DEFAULT_EPSILON, GO_STATES, build_go_model
from openmm_bg.molecules.states import parse_state
from openmm_bg.reference.bundled import bundled_path
from openmm_bg.simulation.tempering import energy_evaluations, read_parallel_tempering, run_parallel_tempering

RESULTS = Path("benchmarks/results/go-model-reference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="run folder (repeat*.nc, settings.json, rounds.log)")
    parser.add_argument("--structure", type=Path, default=None, help="native PDB (default: the bundled trpzip2-implicit.pdb)")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="kJ/mol (default: kT at 300 K)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--first-repeat", type=int, default=0,
                        help="run repeats FIRST .. FIRST+REPEATS-1 (seeds seed+r), e.g. more repeats in a second process")
    parser.add_argument("--iterations", type=int, default=2000, help="per repeat")
    parser.add_argument("--round", type=int, default=250)
    parser.add_argument("--t-min", type=float, default=250.0)
    parser.add_argument("--t-max", type=float, default=400.0)
    parser.add_argument("--n-temperatures", type=int, default=8)
    parser.add_argument("--steps", type=int, default=250, help="GHMC steps per iteration")
    parser.add_argument("--timestep", type=float, default=0.015, help="ps")
    parser.add_argument("--friction", type=float, default=5.0, help="1/ps")
    parser.add_argument("--seed", type=int, default=1800)
    parser.add_argument("--discard", type=int, default=100, help="iterations discarded from the start of each repeat")
    parser.add_argument("--block-factor", type=float, default=5.0, help="bootstrap block length in statistical inefficiencies")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--analyze", action="store_true", help="only analyse the runs in OUT")
    parser.add_argument("--md-check", type=float, default=None, metavar="T",
                        help="instead, run plain GHMC MD at T (K) from the native, --repeats repeats of --iterations x --steps steps, "
                             "and write md_check_<T>K.json to --results: an independent check of one temperature")
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, go, temperatures: np.ndarray) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    name = "settings.json" if args.first_repeat == 0 else f"settings_from{args.first_repeat}.json"
    (args.out / name).write_text(json.dumps(dict(settings, temperatures=temperatures.tolist()), indent=1))
    grow_in_rounds(args.out, range(args.first_repeat, args.first_repeat + args.repeats), args.iterations, args.round,
                   lambda r, target: run_parallel_tempering(
                       go.system, go.positions, temperatures, args.out / f"repeat{r}.nc", target,
                       steps_per_iteration=args.steps, timestep=args.timestep, collision_rate=args.friction,
                       platform="Reference", checkpoint_interval=1, seed=args.seed + r, progress=False, integrator="ghmc",
                   ))

def folded_fraction_q(args: argparse.Namespace, go) -> tuple[np.ndarray, np.ndarray, int]:
    """Q of every repeat, iteration and temperature (state order), over the length all repeats reached.

    Returns
    -------
    q : ndarray, shape (n_repeats, n_iterations, n_states)
    temperatures : ndarray, shape (n_states,), K
    steps_per_iteration : int
    """
    files = sorted((f for f in args.out.glob("repeat*.nc") if not f.stem.endswith("_checkpoint")), key=lambda p: int(p.stem[6:]))
    if not files:
        raise OSError(f"no repeat*.nc in {args.out}")
    runs = [read_parallel_tempering(f) for f in files]
    n = min(len(r.positions) for r in runs)
    q_native = go.collective_variables["q_native"]
    q = []
    for data in runs:
        xyz = data.positions[:n].astype(np.float64)
        per_replica = q_native(xyz.reshape(-1, *xyz.shape[2:])).reshape(xyz.shape[:2])
        # state order: out[i, k] is the Q of the replica in state k at iteration i
        q.append(np.take_along_axis(per_replica, np.argsort(data.replica_states[:n], axis=1), axis=1))
    return np.array(q), runs[0].temperatures, runs[0].steps_per_iteration


def block_bootstrap(indicator: np.ndarray, block: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap fractions of ``True`` from blocks resampled within each repeat.

    Parameters
    ----------
    indicator : bool ndarray, shape (n_repeats, n_samples)
    block : int
        Block length, samples.

    Returns
    -------
    ndarray, shape (n_bootstrap,)
    """
    n_repeats, n = indicator.shape
    n_blocks = max(n // block, 2)
    block = n // n_blocks
    means = indicator[:, : n_blocks * block].reshape(n_repeats, n_blocks, block).mean(axis=2)
    picks = rng.integers(n_blocks, size=(n_bootstrap, n_repeats, n_blocks))
    return np.take_along_axis(np.broadcast_to(means, (n_bootstrap, n_repeats, n_blocks)), picks, axis=2).mean(axis=(1, 2))


def analyze(args: argparse.Namespace, go, q: np.ndarray, temperatures: np.ndarray, steps: int) -> dict:
    from pymbar import timeseries

    folded = parse_state(GO_STATES["folded"], go.collective_variables)
    unfolded = parse_state(GO_STATES["unfolded"], go.collective_variables)
    if q.shape[1] <= args.discard + 10:
        raise ValueError(f"the repeats have {q.shape[1]} iterations, fewer than --discard {args.discard} + 10")
    q = q[:, args.discard :]
    rng = np.random.default_rng(args.seed)
    rows = []
    for k, temperature in enumerate(temperatures):
        qk = q[:, :, k]
        in_folded = folded.expression.evaluate({"q_native": qk.ravel()}).reshape(qk.shape)
        in_unfolded = unfolded.expression.evaluate({"q_native": qk.ravel()}).reshape(qk.shape)
        p_f, p_u = in_folded.mean(), in_unfolded.mean()
        per_repeat_f, per_repeat_u = in_folded.mean(axis=1), in_unfolded.mean(axis=1)
        g = max(timeseries.statistical_inefficiency(in_folded[r].astype(np.float64)) if 0 < per_repeat_f[r] < 1 else 1.0 for r in range(len(q)))
        block = max(int(np.ceil(args.block_factor * g)), 1)
        boot_f = block_bootstrap(in_folded, block, args.n_bootstrap, rng)
        rng_u = np.random.default_rng(rng.integers(2**32))
        boot_u = block_bootstrap(in_unfolded, block, args.n_bootstrap, rng_u)
        with np.errstate(divide="ignore"):
            boot_df = -np.log(boot_u / boot_f)
            repeat_df = -np.log(per_repeat_u / per_repeat_f)
        sem = lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x)))
        row = {
            "temperature_K": float(temperature),
            "p_folded": float(p_f),
            "p_unfolded": float(p_u),
            "p_folded_err_repeats": sem(per_repeat_f),
            "p_folded_err_bootstrap": float(np.std(boot_f, ddof=1)),
            "dF_kT": float(-np.log(p_u / p_f)),
            "dF_err_repeats": sem(repeat_df),
            "dF_err_bootstrap": float(np.std(boot_df, ddof=1)),
            "p_folded_per_repeat": per_repeat_f.tolist(),
            "dF_per_repeat": repeat_df.tolist(),
            "statistical_inefficiency_iterations": float(g),
            "bootstrap_block_iterations": block,
            "mean_q": float(qk.mean()),
        }
        row["p_folded_err"] = max(row["p_folded_err_repeats"], row["p_folded_err_bootstrap"])
        row["dF_err"] = max(row["dF_err_repeats"], row["dF_err_bootstrap"])
        rows.append(row)
    n_iterations = q.shape[1] + args.discard
    return {
        "system": go.description,
        "states": GO_STATES,
        "epsilon_kJ_per_mol": go.epsilon,
        "n_repeats": int(len(q)),
        "iterations_per_repeat": int(n_iterations - 1),
        "discarded_iterations": args.discard,
        "steps_per_iteration": steps,
        "timestep_ps": args.timestep,
        "collision_rate_per_ps": args.friction,
        "integrator": "GHMC (SeededGHMCMove), velocities redrawn every iteration",
        "seed": args.seed,
        "energy_evaluations": int(len(q) * energy_evaluations(n_iterations - 1, len(temperatures), steps)),
        "temperatures": rows,
    }


def md_check(args: argparse.Namespace, go, temperature: float) -> dict:
    """Fraction folded at one temperature from plain GHMC MD, repeats started at the native.

    Q is read every ``--steps`` steps, as the tempering run reads it every iteration, and the
    same estimators and errors apply (repeats and block bootstrap).
    """
    import openmm
    from openmmtools.integrators import GHMCIntegrator

    from openmm_bg.simulation.langevin import derive_seed

    q = np.empty((args.repeats, args.iterations + 1, 1))
    for r in range(args.repeats):
        integrator = GHMCIntegrator(temperature=temperature, collision_rate=args.friction, timestep=args.timestep)
        integrator.setRandomNumberSeed(derive_seed(args.seed, r, 2))
        context = openmm.Context(go.system, integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(go.positions)
        context.setVelocitiesToTemperature(temperature, derive_seed(args.seed, r, 3))
        xyz = [go.positions]
        for _ in range(args.iterations):
            integrator.step(args.steps)
            xyz.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
        q[r, :, 0] = go.collective_variables["q_native"](np.array(xyz))
        acceptance = integrator.getGlobalVariableByName("naccept") / integrator.getGlobalVariableByName("ntrials")
        print(f"MD check repeat {r}: GHMC acceptance {acceptance:.4f}", flush=True)
    result = analyze(args, go, q, np.array([temperature]), args.steps)
    result["integrator"] = f"plain GHMC MD (openmmtools GHMCIntegrator), no exchanges; acceptance of the last repeat {acceptance:.4f}"
    result["energy_evaluations"] = int(args.repeats * args.iterations * args.steps)
    result["q"] = q
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["temperature_K"] for r in result["temperatures"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.errorbar(t, [r["p_folded"] for r in result["temperatures"]], yerr=[2 * r["p_folded_err"] for r in result["temperatures"]], fmt="o-", capsize=3)
    ax1.set(xlabel="T (K)", ylabel="fraction folded (2 sigma)", ylim=(0, 1))
    ax2.errorbar(t, [r["dF_kT"] for r in result["temperatures"]], yerr=[2 * r["dF_err"] for r in result["temperatures"]], fmt="o-", capsize=3)
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set(xlabel="T (K)", ylabel="dF(unfolded - folded) (kT, 2 sigma)")
    fig.suptitle(result["system"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        go = build_go_model(args.structure or bundled_path("trpzip2-implicit.pdb"), epsilon=args.epsilon)
        temperatures = np.geomspace(args.t_min, args.t_max, args.n_temperatures)
        args.results.mkdir(parents=True, exist_ok=True)
        if args.md_check is not None:
            write_md_check(args, go)
            return 0
        if not args.analyze:
            run(args, go, temperatures)
        q, stored_temperatures, steps = folded_fraction_q(args, go)
        result = analyze(args, go, q, stored_temperatures, steps)
    except (OSError, ValueError) as error:
        print(f"run_go_reference: {error}", file=sys.stderr)
        return 2
    (args.results / "reference.json").write_text(json.dumps(result, indent=1))
    np.savez_compressed(args.results / "q.npz", q=q.astype(np.float32), temperatures=stored_temperatures)
    plot(result, args.results / "fraction_folded.png")
    print(f"{result['n_repeats']} repeats x {result['iterations_per_repeat']} iterations ({result['discarded_iterations']} discarded)")
    print(f"{'T (K)':>8} {'p_folded':>16} {'dF (kT)':>16}  g (it)")
    for r in result["temperatures"]:
        print(f"{r['temperature_K']:8.1f} {r['p_folded']:8.4f} +- {r['p_folded_err']:.4f} {r['dF_kT']:8.3f} +- {r['dF_err']:.3f}  {r['statistical_inefficiency_iterations']:.1f}")
    return 0


def write_md_check(args: argparse.Namespace, go) -> None:
    """Run :func:`md_check` and write ``md_check_<T>K.json`` and ``.npz`` (Q per repeat and sample) to ``--results``."""
    result = md_check(args, go, args.md_check)
    stem = f"md_check_{args.md_check:.1f}K"
    np.savez_compressed(args.results / f"{stem}.npz", q=result.pop("q").astype(np.float32), temperatures=np.array([args.md_check]))
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=1))
    row = result["temperatures"][0]
    print(f"MD at {args.md_check:g} K: p_folded {row['p_folded']:.4f} +- {row['p_folded_err']:.4f}, dF {row['dF_kT']:.3f} +- {row['dF_err']:.3f} kT")


if __name__ == "__main__":
    sys.exit(main())
