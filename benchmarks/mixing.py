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
dead zone so that barrier recrossings are not counted twice.  The cores are

* phi < 0 state: ``phi <= -0.5`` or ``phi >= 2.8`` (the beta basin wraps past +-pi);
* phi > 0 state: ``0.5 <= phi <= 2.2`` (C7ax and alpha_L);

a transition is an entry into one core when the last core visited was the other.

The generator is trained inside the script: ``--ml-iterations`` of maximum
likelihood, then ``--kl-iterations`` (default 0) of ML + KL at 300 K with ``w_kl``
ramped 0 -> 1, ``energy_cut=1000``, ``nonfinite="drop"``, learning rate 5e-4.  KL
raises the ESS but, being mode-seeking, it took away the little mass the generator
had in the phi > 0 basin (measured: 1000 ML + 1000 ML+KL iterations, ESS 0.94 %,
0 of 5000 samples in the phi > 0 core; 1000 ML only, ESS 0.60 %, 1.78 % of samples
there), and without that mass the move makes no transition.  The ML data
are the bundled 300 K MD frames (phi < 0 basin only) plus ``--hot-steps`` of MD at
``--hot-temperature`` (default 10^6 steps at 900 K, one frame per 100 steps, each
cooled by ``--cool-steps`` of 300 K MD), which visits the phi > 0 basin.  Without
them the generator has no mass there and the BG move cannot make the transition
(``--hot-steps 0`` shows it).  The energy evaluations of training (hot and cooling
MD steps, KL samples) are printed separately and are not part of the sampling
budget.

Run from the repository root::

    nice -n 19 python benchmarks/mixing.py                      # a few minutes
    nice -n 19 python benchmarks/mixing.py --md-budget 20000000   # more MD statistics (rates are per 10^6)
    nice -n 19 python benchmarks/mixing.py --budget 5000000      # longer runs of both arms
    nice -n 19 python benchmarks/mixing.py --save-generator /tmp/ala2-bg.pt
    nice -n 19 python benchmarks/mixing.py --generator /tmp/ala2-bg.pt   # skip training
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import torch
from openmmtools import cache, mcmc, states

from openmm_bg.builders import molecular_generator_from_data
from openmm_bg.data.bundled import load_bundled_trajectory
from openmm_bg.data.moves import SeededLangevinMove
from openmm_bg.energies import OpenMMEnergy
from openmm_bg.generator import BoltzmannGenerator, load_generator, save_generator
from openmm_bg.moves import BoltzmannGeneratorMove
from openmm_bg.reweighting import kish_ess
from openmm_bg.systems import MolecularSystem, get_system
from openmm_bg.training import Trainer, TrainingConfig

__all__ = ["NEGATIVE_CORE", "POSITIVE_CORE", "core_labels", "count_transitions", "train_generator", "run_arm", "main"]

#: phi < 0 core (radians): phi <= -0.5 or phi >= 2.8
NEGATIVE_CORE = (-0.5, 2.8)
#: phi > 0 core (radians): 0.5 <= phi <= 2.2
POSITIVE_CORE = (0.5, 2.2)


def core_labels(phi: np.ndarray) -> np.ndarray:
    """Core of each phi value: -1 (phi < 0 state), +1 (phi > 0 state), 0 (dead zone).

    Parameters
    ----------
    phi : ndarray, shape (n,), radians in [-pi, pi]

    Returns
    -------
    ndarray, shape (n,), int8
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1:
        raise ValueError(f"phi must be one-dimensional, got shape {phi.shape}")
    labels = np.zeros(phi.shape, dtype=np.int8)
    labels[(phi <= NEGATIVE_CORE[0]) | (phi >= NEGATIVE_CORE[1])] = -1
    labels[(phi >= POSITIVE_CORE[0]) & (phi <= POSITIVE_CORE[1])] = 1
    return labels


def count_transitions(phi: np.ndarray, start: int = -1) -> int:
    """Number of entries into one core after the other core was the last one visited.

    Parameters
    ----------
    phi : ndarray, shape (n,), radians
        The recorded trajectory.
    start : int
        Core the trajectory starts in (-1 or +1).

    Returns
    -------
    int
    """
    if start not in (-1, 1):
        raise ValueError(f"start must be -1 or +1, got {start!r}")
    visited = core_labels(phi)
    visited = visited[visited != 0]
    previous = np.concatenate([[start], visited[:-1]])
    return int(np.sum(visited != previous))


def hot_md_frames(
    molecule: MolecularSystem, x0: np.ndarray, temperature: float, n_steps: int, every: int, cool_steps: int, seed: int
) -> np.ndarray:
    """Frames of Langevin MD (1 fs, 1/ps) at a raised temperature, each cooled to the molecule's temperature.

    The hot run crosses the phi barrier; its frames are hot in every coordinate
    (bonds and angles too), which a 300 K generator must not learn.  So each saved
    frame is copied into a second Context and relaxed for ``cool_steps`` of Langevin
    MD at the molecule's temperature with a strong friction (50/ps), short enough to
    stay in the basin it was taken from.

    Parameters
    ----------
    x0 : ndarray, shape (n_atoms, 3), nm
    temperature : float, K
    n_steps, every, cool_steps : int
        Hot MD steps, steps between saved frames, and cooling steps per frame; every
        step is one energy evaluation.

    Returns
    -------
    ndarray, shape (n_steps // every, n_atoms, 3), float64, nm
    """
    platform = openmm.Platform.getPlatformByName(molecule.platform)
    hot = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, 1.0 / unit.picosecond, 0.001 * unit.picosecond)
    hot.setRandomNumberSeed(seed + 1)
    hot_context = openmm.Context(molecule.system, hot, platform)
    hot_context.setPositions(x0)
    hot_context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + 2)
    cool = openmm.LangevinMiddleIntegrator(molecule.temperature * unit.kelvin, 50.0 / unit.picosecond, 0.001 * unit.picosecond)
    cool.setRandomNumberSeed(seed + 3)
    cool_context = openmm.Context(molecule.system, cool, platform)
    frames = []
    for _ in range(n_steps // every):
        hot.step(every)
        cool_context.setPositions(hot_context.getState(getPositions=True).getPositions())
        cool_context.setVelocitiesToTemperature(molecule.temperature * unit.kelvin, seed + 4 + len(frames))
        cool.step(cool_steps)
        frames.append(cool_context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.asarray(frames, dtype=np.float64)


def train_generator(
    molecule: MolecularSystem,
    ml_iterations: int,
    kl_iterations: int,
    seed: int,
    hot_temperature: float = 900.0,
    hot_steps: int = 1_000_000,
    cool_steps: int = 200,
) -> tuple[BoltzmannGenerator, dict, int, float]:
    """Train a generator: ML, then ML + KL at the molecule's temperature (w_kl ramped 0 -> 1).

    The ML data are the bundled 300 K MD frames (phi < 0 basin only) plus, if
    ``hot_steps > 0``, one frame per 100 steps of MD at ``hot_temperature`` started from
    the first bundled frame, each cooled by ``cool_steps`` (see :func:`hot_md_frames`).
    That MD visits the phi > 0 basin, so the generator puts mass there; the bundled
    data alone give a generator without it (measured: 0 of 5000 samples in the
    phi > 0 core after 1500 ML + 2000 ML+KL iterations).

    Returns
    -------
    generator : BoltzmannGenerator
        With ``molecule``'s energy as target (kT).
    builder_kwargs : dict
    training_evaluations : int
        Energy evaluations of training: hot and cooling MD steps plus KL samples.
    wall : float, s
    """
    start = time.perf_counter()
    data = load_bundled_trajectory(molecule.name).astype(np.float64)
    evaluations = 0
    if hot_steps:
        data = np.concatenate([data, hot_md_frames(molecule, data[0], hot_temperature, hot_steps, 100, cool_steps, seed)])
        evaluations += hot_steps + (hot_steps // 100) * cool_steps
    energy = OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform)
    generator, kwargs = molecular_generator_from_data(molecule.topology, data, energy)
    trainer = Trainer(generator, TrainingConfig(n_iterations=ml_iterations, batch_size=256, learning_rate=1e-3, seed=seed), data=torch.as_tensor(data))
    if ml_iterations:
        trainer.train(progress=False)
    if kl_iterations:
        config = TrainingConfig(
            n_iterations=kl_iterations,
            batch_size=256,
            kl_batch_size=256,
            learning_rate=5e-4,
            w_ml=1.0,
            w_kl=[[0, 0.0], [kl_iterations, 1.0]],
            energy_cut=1000.0,
            nonfinite="drop",
            seed=seed + 1,
        )
        trainer = Trainer(generator, config, data=torch.as_tensor(data))
        trainer.train(progress=False)
        evaluations += trainer.energy_evaluations
    generator.eval()
    return generator, kwargs, evaluations, time.perf_counter() - start


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
    parser.add_argument("--budget", type=int, default=1_000_000, help="energy evaluations per arm")
    parser.add_argument("--md-budget", type=int, default=None, help="energy evaluations of the MD-alone arm (default: --budget); more gives MD a usable transition count")
    parser.add_argument("--md-steps", type=int, default=250, help="MD steps per recorded cycle, MD-alone arm")
    parser.add_argument("--bg-md-steps", type=int, default=100, help="MD steps per cycle, MD + BG arm")
    parser.add_argument("--proposals", type=int, default=100, help="BG proposals per cycle")
    parser.add_argument("--ml-iterations", type=int, default=1000)
    parser.add_argument(
        "--kl-iterations", type=int, default=0,
        help="ML+KL iterations after ML (measured: 1000 of them, w_kl ramped to 1, removed the generator's phi > 0 mass)",
    )
    parser.add_argument("--cool-steps", type=int, default=200, help="300 K MD steps (50/ps) that cool each hot frame")
    parser.add_argument("--hot-temperature", type=float, default=900.0, help="K, temperature of the extra training MD")
    parser.add_argument("--hot-steps", type=int, default=1_000_000, help="steps of extra training MD at --hot-temperature (0: bundled data only)")
    parser.add_argument("--generator", default=None, help="load this generator checkpoint instead of training")
    parser.add_argument("--save-generator", default=None, help="write the trained generator here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("budget", "md_steps", "bg_md_steps", "proposals"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.md_budget is not None and args.md_budget < 1:
        parser.error("--md-budget must be positive")
    return args


def main(args: argparse.Namespace) -> dict:
    """Train (or load) the generator, run both arms, print the comparison; return the figures."""
    torch.manual_seed(args.seed)
    # two cores shared with other jobs: a second torch thread only adds contention (measured 36 ms vs 600 ms per BG cycle)
    torch.set_num_threads(1)
    molecule = get_system("ala2-vacuum")
    data = load_bundled_trajectory("ala2-vacuum").astype(np.float64)
    phi_data = molecule.collective_variables["phi"](data)
    x0 = data[int(np.argmin(np.abs(phi_data + 1.75)))]  # an MD frame in the phi < 0 basin, phi near -100 deg

    with tempfile.TemporaryDirectory() as scratch:
        if args.generator:
            checkpoint = str(Path(args.generator).resolve())
            generator = load_generator(checkpoint, OpenMMEnergy(molecule.system, molecule.temperature, platform=molecule.platform))
            print(f"generator: loaded {checkpoint} (training cost not measured in this run)")
        else:
            generator, kwargs, training_evaluations, training_wall = train_generator(
                molecule, args.ml_iterations, args.kl_iterations, args.seed, args.hot_temperature, args.hot_steps, args.cool_steps
            )
            checkpoint = args.save_generator or str(Path(scratch) / "generator.pt")
            save_generator(generator, checkpoint, "openmm_bg.builders.molecular_generator", kwargs)
            print(
                f"generator: {args.hot_steps} MD steps at {args.hot_temperature:g} K (+ {args.cool_steps} cooling steps per frame) for data, {args.ml_iterations} ML + "
                f"{args.kl_iterations} ML+KL iterations, {training_wall:.0f} s in all; "
                f"{training_evaluations} training energy evaluations (not part of the sampling budget)"
            )
        report = generator_report(generator, molecule, 5000, args.seed)
        print(
            f"generator: Kish ESS {100 * report['ess']:.2f} % of 5000 samples; phi > 0 core holds "
            f"{100 * report['positive_fraction']:.2f} % of samples and {100 * report['positive_weight']:.2f} % of their weight"
        )

        arms = {
            "MD": run_arm(molecule, x0, args.md_budget or args.budget, args.md_steps, 0, None, args.seed),
            "MD + BG": run_arm(molecule, x0, args.budget, args.bg_md_steps, args.proposals, checkpoint, args.seed),
        }

    budgets = f"{args.budget}" if not args.md_budget or args.md_budget == args.budget else f"{args.md_budget} (MD) and {args.budget} (MD + BG)"
    print(f"\nbudget {budgets} energy evaluations; transitions = entries into the other core (phi <= -0.5 or >= 2.8 | 0.5 <= phi <= 2.2 rad)")
    print(f"{'':10s}{'evaluations':>13s}{'cycles':>9s}{'transitions':>13s}{'per 1e6 evals':>15s}{'in phi>0':>10s}{'BG accept':>11s}{'wall s':>9s}")
    rates = {}
    for name, arm in arms.items():
        rates[name] = 1e6 * arm["transitions"] / arm["evaluations"]
        accept = f"{100 * arm['acceptance']:.2f} %" if np.isfinite(arm["acceptance"]) else "-"
        print(
            f"{name:10s}{arm['evaluations']:>13d}{arm['cycles']:>9d}{arm['transitions']:>13d}{rates[name]:>15.1f}"
            f"{100 * arm['positive_fraction']:>9.2f}%{accept:>11s}{arm['wall']:>9.1f}"
        )
    print(f"BG move statistics: {arms['MD + BG']['statistics']}")
    if arms["MD"]["transitions"]:
        print(f"ratio (MD + BG) / MD transitions per 1e6 evaluations: {rates['MD + BG'] / rates['MD']:.1f}")
    else:
        # no MD transition: the ratio is only bounded below, using one transition for MD
        print(f"ratio (MD + BG) / MD: MD made no transition; at least {rates['MD + BG'] / (1e6 / arms['MD']['evaluations']):.1f} (taking MD as 1 transition)")
    return dict(arms=arms, rates=rates, generator=report)


if __name__ == "__main__":
    main(parse_args())
