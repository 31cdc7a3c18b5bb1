"""Transitions between the phi < 0 and phi > 0 states of alanine dipeptide: MD alone vs MD + BG move.

On ``ala2-vacuum`` (300 K, no constraints) it runs, side by side and on the same
budget of energy evaluations:

* **MD**: ``SeededLangevinMove`` (an openmmtools ``LangevinDynamicsMove``, 1 fs,
  1/ps, continuous velocities) in chunks of ``--md-steps``;
* **MD + BG**: ``SequenceMove([SeededLangevinMove(n_steps=--bg-md-steps),
  BoltzmannGeneratorMove(n_proposals=--proposals)])``.

Energy evaluations are counted as: one per MD step, and ``n_proposals + 1`` per
BG application (each proposal, plus the current configuration, whose reduced
potential the move evaluates once per application).  Each arm stops at the first
cycle that reaches the budget, so both spend the budget to within one cycle.

**Transitions** are counted on phi (radians) recorded after every cycle, with a
dead zone so that barrier recrossings are not counted twice (:mod:`benchmarks.two_state`).
The cores are

* phi < 0 state: ``phi <= -0.5`` or ``phi >= 2.8`` (the beta basin wraps past +-pi);
* phi > 0 state: ``0.5 <= phi <= 2.2`` (C7ax and alpha_L);

a transition is an entry into one core when the last core visited was the other.

**The generator** is ``--generator PATH``, a ``generator.pt`` written by ``openmm-bg demo``
or ``openmm-bg train``.  Without it the script trains one with
``openmm_bg.recipes.demo.run_demo`` (the demo's recipe: ``DemoSettings`` defaults, or
``--config DEMO.yaml``, on the bundled MD from both phi basins) in ``--workdir`` (default
a temporary folder), and prints what that cost.  The generator's training cost (the MD
that made its data, and its training energies) is printed separately and is not part of
the sampling budget.

**MD alone hardly ever crosses** within an affordable budget, so besides the observed
rate the script prints its 95 % Poisson range (with no transition, the upper bound
3 / budget) and the ratio as a lower bound ("at least N x"), and the MD rate predicted
from the bundled MD by the two-state estimate of ``benchmarks/ala2_free_energy.py``
(escape rate from the phi > 0 core of the runs started in C7ax, detailed balance with the
reference dF): in equilibrium MD makes ``2 P_A k_AB`` transitions per ns, that is per
10^6 energy evaluations at 1 fs.

Run from the repository root::

    nice -n 19 python -m benchmarks.mixing                                  # trains the demo generator first
    nice -n 19 python -m benchmarks.mixing --generator openmm-bg-demo/generator.pt
    nice -n 19 python -m benchmarks.mixing --generator G.pt --md-budget 20000000   # more MD statistics (rates are per 10^6)
    nice -n 19 python -m benchmarks.mixing --generator G.pt --budget 5000000       # longer runs of both arms
    openmm-bg demo --quick --output /tmp/q && python -m benchmarks.mixing --generator /tmp/q/generator.pt --budget 20000 --md-budget 20000   # smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import torch
from openmmtools import cache, mcmc, states

from benchmarks.two_state import NEGATIVE_CORE, POSITIVE_CORE, core_labels, count_transitions, md_cost_estimate, poisson_interval

from openmm_bg.molecules import load_bundled_trajectory
from openmm_bg.simulation.langevin import SeededLangevinMove
from openmm_bg.energies import OpenMMEnergy  # noqa: E402
from openmm_bg.generator.checkpoints import load_generator, read_torch_file
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.moves import BoltzmannGeneratorMove  # noqa: E402
from openmm_bg.recipes.demo import DemoSettings, run_demo
from openmm_bg.analysis.reweighting import kish_ess
from openmm_bg.molecules.systems import MolecularSystem, get_system

__all__ = ["NEGATIVE_CORE", "POSITIVE_CORE", "core_labels", "count_transitions", "train_demo_generator", "checkpoint_cost",
           "predicted_md_rate", "run_arm", "main"]


def train_demo_generator(settings: DemoSettings, workdir: Path) -> tuple[str, dict]:
    """Train with ``run_demo`` (the ``openmm-bg demo`` recipe) in ``workdir``; the checkpoint path and the demo's figures."""
    report = run_demo(settings, workdir, progress=False)
    return report.paths["generator"], dict(
        ml_iterations=len(report.history_ml), kl_iterations=len(report.history_kl), frames=report.n_frames,
        evaluations=dict(report.energy_evaluations), wall=dict(report.wall_time_s), ess=report.kish_ess,
        delta_f=report.delta_f, delta_f_error=report.delta_f_error, deviation=report.deviation, n_samples=report.n_samples,
    )


def checkpoint_cost(path: str) -> str:
    """What the checkpoint's metadata says about its training (``openmm-bg demo``/``train`` write it), in words."""
    metadata = read_torch_file(path, "generator checkpoint").get("metadata") or {}
    parts = []
    demo = metadata.get("demo_settings")
    if isinstance(demo, dict) and demo.get("training_data"):
        parts.append(f"{sum(int(d.get('md_steps', 0)) for d in demo['training_data']):,} MD steps made its training data")
    for stage in metadata.get("training", []) or []:
        if isinstance(stage, dict) and "n_iterations" in stage:
            kind = "ML" if not stage.get("w_kl") else "ML+KL"
            parts.append(f"{stage['n_iterations']} {kind} iterations")
    if "energy_evaluations" in metadata:
        parts.append(f"{int(metadata['energy_evaluations']):,} training energy evaluations")
    return "; ".join(parts) if parts else "training cost not recorded in the checkpoint"


def predicted_md_rate(delta_f: float) -> dict:
    """MD transitions per 10^6 energy evaluations (1 fs steps) predicted from the bundled MD (two-state estimate).

    In equilibrium both directions carry the flux ``P_A k_AB``, so a long run makes
    ``2 P_A k_AB`` transitions per ns = per 10^6 steps; a run much shorter than the
    relaxation time started in phi < 0 expects ``k_AB`` per ns.  Ranges: the 95 % Poisson
    interval of the escape count.
    """
    est = md_cost_estimate(delta_f)
    c, fast, slow = est["central"], est["fast"], est["slow"]
    return dict(
        rate=2 * c["p_a"] * c["k_ab"], high=2 * fast["p_a"] * fast["k_ab"], low=2 * slow["p_a"] * slow["k_ab"] if slow else 0.0,
        k_ab=c["k_ab"], tau_ns=c["tau"], exits=est["k_ba"]["n"], upper_bound_only=est["k_ba"]["upper_bound_only"],
    )


def generator_report(generator: BoltzmannGenerator, molecule: MolecularSystem, n: int, seed: int) -> dict:
    """Kish ESS of ``n`` samples, and the fraction of samples and of weight in the phi > 0 core."""
    sample = generator.sample(n, generator=torch.Generator().manual_seed(seed))
    log_w = sample.log_weight.double().numpy()
    x = sample.x.double().numpy()
    ok = np.isfinite(log_w)
    labels = np.zeros(n, dtype=np.int8)
    labels[ok] = core_labels(molecule.collective_variables["phi"](x[ok]))
    w = np.zeros(n)
    if ok.any():
        w[ok] = np.exp(log_w[ok] - log_w[ok].max())
    return dict(
        ess=kish_ess(log_w) if ok.any() else 0.0,
        positive_fraction=float(np.mean(labels == 1)),
        positive_weight=float(w[labels == 1].sum() / w.sum()) if w.sum() > 0 else float("nan"),
    )


def run_arm(molecule: MolecularSystem, x0: np.ndarray, budget: int, md_steps: int, proposals: int, checkpoint: str | None, seed: int) -> dict:
    """Run one arm until ``budget`` energy evaluations; ``proposals = 0`` is MD alone.

    Returns
    -------
    dict
        ``evaluations``, ``transitions``, ``cycles``, ``acceptance`` (NaN for MD
        alone), ``positive_fraction`` (of recorded frames in the phi > 0 core) and
        ``wall`` (s).
    """
    thermodynamic_state = states.ThermodynamicState(molecule.system, molecule.temperature * unit.kelvin)
    sampler_state = states.SamplerState(x0 * unit.nanometer)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(molecule.platform))
    md = SeededLangevinMove(timestep=0.001, collision_rate=1.0, n_steps=md_steps, seed=seed, refresh_velocities=False)
    context, _ = context_cache.get_context(thermodynamic_state)
    sampler_state.apply_to_context(context, ignore_velocities=True)
    context.setVelocitiesToTemperature(molecule.temperature * unit.kelvin, seed + 1)
    sampler_state.update_from_context(context)
    bg = None
    if proposals:
        bg = BoltzmannGeneratorMove(checkpoint, n_proposals=proposals, seed=seed)
        move = mcmc.SequenceMove([md, bg])
    else:
        move = md
    per_cycle = md_steps + (proposals + 1 if proposals else 0)
    n_cycles = -(-budget // per_cycle)
    phi_cv = molecule.collective_variables["phi"]
    phi = np.empty(n_cycles)
    start = time.perf_counter()
    for cycle in range(n_cycles):
        move.apply(thermodynamic_state, sampler_state, context_cache)
        phi[cycle] = phi_cv(np.asarray(sampler_state.positions.value_in_unit(unit.nanometer))[None])[0]
    wall = time.perf_counter() - start
    if bg is not None:
        # SequenceMove applies its own (deserialised) copy of the move
        bg = move.move_list[1]
    return dict(
        evaluations=n_cycles * per_cycle,
        transitions=count_transitions(phi, start=-1),
        cycles=n_cycles,
        acceptance=bg.acceptance_rate if bg is not None else float("nan"),
        statistics=bg.statistics if bg is not None else {},
        positive_fraction=float(np.mean(core_labels(phi) == 1)),
        wall=wall,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default=None, help="generator.pt from openmm-bg demo or openmm-bg train (default: train one with run_demo)")
    parser.add_argument("--config", type=Path, default=None, help="without --generator: demo settings YAML (DemoSettings.from_yaml) for the training")
    parser.add_argument("--workdir", type=Path, default=None, help="without --generator: keep the demo's outputs (generator.pt, report.json, ...) here (default: a temporary folder)")
    parser.add_argument("--budget", type=int, default=1_000_000, help="energy evaluations of the MD + BG arm")
    parser.add_argument("--md-budget", type=int, default=None, help="energy evaluations of the MD-alone arm (default: 5 x --budget, so that no MD transition still bounds the ratio above 100 x at the measured MD + BG rates)")
    parser.add_argument("--md-steps", type=int, default=250, help="MD steps per recorded cycle, MD-alone arm")
    parser.add_argument("--bg-md-steps", type=int, default=100, help="MD steps per cycle, MD + BG arm")
    parser.add_argument("--proposals", type=int, default=100, help="BG proposals per cycle")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("budget", "md_steps", "bg_md_steps", "proposals"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.md_budget is not None and args.md_budget < 1:
        parser.error("--md-budget must be positive")
    if args.generator is not None and not Path(args.generator).is_file():
        parser.error(f"generator checkpoint not found: {args.generator}")
    if args.generator is not None and (args.config is not None or args.workdir is not None):
        parser.error("--config and --workdir are for training; they do nothing with --generator")
    return args


def _rate_range(n: int, evaluations: int) -> tuple[float, float]:
    """95 % Poisson range of a transition count, per 10^6 evaluations."""
    low, high = poisson_interval(n)
    return 1e6 * low / evaluations, 1e6 * high / evaluations


def main(args: argparse.Namespace) -> dict:
    """Load (or train) the generator, run both arms, print the comparison; return the figures."""
    # two cores shared with other jobs: a second torch thread only adds contention (measured 36 ms vs 600 ms per BG cycle)
    torch.set_num_threads(1)
    molecule = get_system("ala2-vacuum")
    data = load_bundled_trajectory("ala2-vacuum").astype(np.float64)
    phi_data = molecule.collective_variables["phi"](data)
    x0 = data[int(np.argmin(np.abs(phi_data + 1.75)))]  # an MD frame in the phi < 0 basin, phi near -100 deg

    with tempfile.TemporaryDirectory(prefix="mixing-") as scratch:
        demo = None
        if args.generator:
            checkpoint = str(Path(args.generator).resolve())
            print(f"generator: loaded {checkpoint}; {checkpoint_cost(checkpoint)}")
        else:
            settings = DemoSettings.from_yaml(args.config) if args.config is not None else DemoSettings()
            workdir = args.workdir or Path(scratch) / "demo"
            print(f"generator: training with run_demo ({settings.ml['n_iterations']} ML + {settings.kl['n_iterations']} KL iterations, "
                  f"architecture {settings.architecture}) in {workdir}", file=sys.stderr, flush=True)
            checkpoint, demo = train_demo_generator(settings, workdir)
            e, w = demo["evaluations"], demo["wall"]
            df = "-" if demo["delta_f"] is None else f"{demo['delta_f']:.3f} +- {demo['delta_f_error']:.3f} kT"
            print(f"generator: trained by run_demo: {demo['ml_iterations']} ML + {demo['kl_iterations']} KL iterations on {demo['frames']} frames, "
                  f"{w['training']:.0f} s training; its cost (not part of the sampling budget): {e['md_data']:,} MD steps for the data + "
                  f"{e['training']:,} training energy evaluations; demo check: {demo['n_samples']:,} samples, Kish ESS {100 * demo['ess']:.2f} %, dF {df}")
        generator = load_generator(checkpoint, OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform))
        generator.eval()
        report = generator_report(generator, molecule, 5000, args.seed)
        print(
            f"generator: Kish ESS {100 * report['ess']:.2f} % of 5000 samples; phi > 0 core holds "
            f"{100 * report['positive_fraction']:.2f} % of samples and {100 * report['positive_weight']:.2f} % of their weight"
        )

        arms = {
            "MD": run_arm(molecule, x0, args.md_budget or 5 * args.budget, args.md_steps, 0, None, args.seed),
            "MD + BG": run_arm(molecule, x0, args.budget, args.bg_md_steps, args.proposals, checkpoint, args.seed),
        }

    md_budget = args.md_budget or 5 * args.budget
    budgets = f"{args.budget:,}" if md_budget == args.budget else f"{md_budget:,} (MD) and {args.budget:,} (MD + BG)"
    print(f"\nbudget {budgets} energy evaluations; transitions = entries into the other core (phi <= -0.5 or >= 2.8 | 0.5 <= phi <= 2.2 rad)")
    print(f"{'':10s}{'evaluations':>13s}{'cycles':>9s}{'transitions':>13s}{'per 1e6 evals':>15s}{'95 % range':>19s}{'in phi>0':>10s}{'BG accept':>11s}{'wall s':>9s}")
    rates, ranges = {}, {}
    for name, arm in arms.items():
        rates[name] = 1e6 * arm["transitions"] / arm["evaluations"]
        ranges[name] = _rate_range(arm["transitions"], arm["evaluations"])
        accept = f"{100 * arm['acceptance']:.2f} %" if np.isfinite(arm["acceptance"]) else "-"
        span = f"{ranges[name][0]:.3g} - {ranges[name][1]:.3g}"
        print(
            f"{name:10s}{arm['evaluations']:>13,d}{arm['cycles']:>9d}{arm['transitions']:>13d}{rates[name]:>15.3g}{span:>19s}"
            f"{100 * arm['positive_fraction']:>9.2f}%{accept:>11s}{arm['wall']:>9.1f}"
        )
    print(f"BG move statistics: {arms['MD + BG']['statistics']}")

    bg_rate, (md_low, md_high) = rates["MD + BG"], ranges["MD"]
    target = 100.0
    if arms["MD"]["transitions"]:
        ratio, lower = bg_rate / rates["MD"], bg_rate / md_high
        print(f"ratio (MD + BG) / MD, transitions per 1e6 evaluations: {ratio:,.1f} x (95 % range from the MD count: {lower:,.1f} - {bg_rate / md_low:,.1f} x)")
    else:
        lower = bg_rate / md_high
        print(f"ratio (MD + BG) / MD: MD made no transition in {arms['MD']['evaluations']:,} evaluations, so its rate is below "
              f"3 / budget = {md_high:.3g} per 1e6 (95 % Poisson upper bound): at least {lower:,.1f} x")
    print(f"  target >= {target:g} x: {'met' if lower >= target else 'not shown'} by the measured lower bound")

    from openmm_bg.reference.bundled import load_reference

    delta_f = float(load_reference("ala2-vacuum")["delta_f_kT"])
    predicted = predicted_md_rate(delta_f)
    bound = " (an upper bound: no escape in the C7ax run)" if predicted["upper_bound_only"] else ""
    print(f"MD alone predicted from the bundled MD (two-state estimate, {predicted['exits']} escape(s) from phi > 0 in the runs started in C7ax, "
          f"dF_ref = {delta_f:.3f} kT): 2 P_A k_AB = {predicted['rate']:.3g} transitions per 1e6 evaluations "
          f"(95 % range {predicted['low']:.2g} - {predicted['high']:.2g}){bound}; relaxation time {predicted['tau_ns']:.3g} ns")
    if bg_rate > 0:
        span = f"{bg_rate / predicted['high']:,.0f} - " + (f"{bg_rate / predicted['low']:,.0f} x" if predicted["low"] > 0 else "unbounded")
        print(f"ratio (MD + BG) / predicted MD: {bg_rate / predicted['rate']:,.0f} x (95 % range {span}); target >= {target:g} x: "
              f"{'met' if bg_rate / predicted['high'] >= target else 'not shown'} at the low end of the range")
    else:
        print("ratio (MD + BG) / predicted MD: MD + BG made no transition")
    return dict(arms=arms, rates=rates, ranges=ranges, ratio_lower_bound=lower, predicted_md=predicted, generator=report, demo=demo)


if __name__ == "__main__":
    main(parse_args())
