"""Umbrella-sampling reference for the particle dimer: the free-energy profile along the dimer distance and dF(open - closed).

Method
------
* Windows along the in-plane dimer distance ``d``, centres ``d_k`` from ``--d-min`` to ``--d-max``
  every ``--spacing`` nm, each with the harmonic bias ``b_k(d) = 0.5 kappa (d - d_k)^2`` in kT
  (``--kappa``, kT/nm^2), a ``CustomCompoundBondForce`` on particles 0 and 1 in the plane, added
  to the registered ``particle-dimer`` System (built for 300 K).  ``kappa`` must exceed the
  bond's negative curvature at its barrier top (200 kT/nm^2) so that every biased window is
  unimodal along ``d``.
* ``--temperature`` (default the System's 300 K): at another temperature ``T`` the unbiased
  reduced energy is ``u 300 K / T``, the model at temperature ``T / 300 K``; the bias is in kT at ``T``.
* Each window starts from the solvent lattice of
  :func:`openmm_bg.energies.particle_dimer.start_positions` with the dimer at ``d_k``, minimised
  with its bias on, with velocities drawn at ``T``.
* Hamiltonian replica exchange: one Context per window (Reference platform), each cycle runs
  ``--steps-per-cycle`` steps of LangevinMiddleIntegrator in every window, records every
  window's ``d``, and then tries to swap the configurations (positions and velocities) of
  neighbouring windows, even pairs on even cycles and odd pairs on odd ones, accepted by
  Metropolis on the bias energies.  The solvent, the slow coordinate orthogonal to ``d``,
  then travels between windows.  ``--no-exchange`` runs independent windows instead.
* Analysis: MBAR (pymbar 4, :func:`openmm_bg.reference.estimates.mbar_log_populations`) on the
  reduced bias energies ``u_kn[k, n] = b_k(d_n)`` (the unbiased energy cancels), with the first
  ``--discard`` cycles left out; the unbiased weights give
  ``dF = F(open) - F(closed) = -ln(P(d > d*) / P(d < d*))``, ``d*`` the barrier top of the bond
  (1.4950 nm), and the profile ``F(d) = -ln p(d)`` (normalised density,
  :func:`openmm_bg.analysis.reweighting.free_energy_profile`) on ``--n-bins`` bins.  Errors: a
  block bootstrap over time (the cycles cut into ``--n-blocks`` blocks, the same blocks for all
  windows, ``--n-bootstrap`` resamples), and the estimates of the first and second halves.

Resumable: the state of every window, the recorded series and the exchange counts are saved to
``OUT/checkpoint.npz`` every ``--round`` cycles; running the same command again continues
(integrators and the exchange generator are reseeded from ``--seed`` and the cycle a run resumes
at, so the resume points are part of the recipe), and a run that is complete only redoes the
analysis.  The summary goes to ``OUT/summary.json``.

    OPENMM_CPU_THREADS=1 nice -n 10 python scripts/run_particle_dimer_umbrella.py runs/particle-dimer-umbrella --cycles 4000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import unit

from openmm_bg.analysis.reweighting import free_energy_profile
from openmm_bg.energies.particle_dimer import ParticleDimer, dimer_distance, in_plane, start_positions
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference.estimates import mbar_log_populations
from openmm_bg.simulation.langevin import derive_seed
from openmm_bg.units import kt_kjmol, positions_nm

#: settings that must match for a run to resume from a checkpoint
SIMULATION_KEYS = ("temperature", "d_min", "d_max", "spacing", "kappa", "steps_per_cycle", "timestep", "friction", "exchange", "seed")


def window_centres(d_min: float, d_max: float, spacing: float) -> np.ndarray:
    """Window centres from ``d_min`` to ``d_max`` (inclusive, to rounding) every ``spacing`` nm."""
    if not (0 < d_min < d_max) or spacing <= 0:
        raise ValueError(f"need 0 < d_min < d_max and spacing > 0, got d_min={d_min}, d_max={d_max}, spacing={spacing}")
    return d_min + spacing * np.arange(int(np.floor((d_max - d_min) / spacing + 1e-9)) + 1)


def bias_reduced(d: np.ndarray, centres: np.ndarray, kappa: float) -> np.ndarray:
    """``u_kn[k, n] = 0.5 kappa (d_n - centre_k)^2``, kT, shape (n_windows, n_samples)."""
    return 0.5 * kappa * (np.asarray(d)[None, :] - np.asarray(centres)[:, None]) ** 2


def biased_system(system: openmm.System, temperature: float, kappa: float) -> openmm.System:
    """A copy of the particle-dimer System with the umbrella bias on the in-plane dimer distance (centre ``us_d0``)."""
    biased = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    bias = openmm.CustomCompoundBondForce(2, "us_kT * 0.5 * us_kappa * (sqrt((x1 - x2)^2 + (y1 - y2)^2) - us_d0)^2")
    bias.setName("umbrella")
    bias.addGlobalParameter("us_kT", kt_kjmol(temperature))
    bias.addGlobalParameter("us_kappa", kappa)
    bias.addGlobalParameter("us_d0", 0.0)
    bias.addBond([0, 1], [])
    biased.addForce(bias)
    return biased


class Windows:
    """One Context per window; positions and velocities move between them on an exchange."""

    def __init__(self, system: openmm.System, centres: np.ndarray, settings: dict, cycle: int):
        self.centres = centres
        self.settings = settings
        platform = openmm.Platform.getPlatformByName("Reference")
        self.contexts = []
        for k, centre in enumerate(centres):
            integrator = openmm.LangevinMiddleIntegrator(settings["temperature"], settings["friction"], settings["timestep"])
            integrator.setRandomNumberSeed(derive_seed(settings["seed"], k, cycle))
            context = openmm.Context(system, integrator, platform)
            context.setParameter("us_d0", float(centre))
            self.contexts.append(context)

    def start(self, seed: int) -> None:
        """Minimise each window's lattice start with its bias on, and draw velocities."""
        energy = ParticleDimer()
        for k, (context, centre) in enumerate(zip(self.contexts, self.centres)):
            context.setPositions(in_plane(start_positions(energy, float(centre), relax=False)))
            openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
            context.setVelocitiesToTemperature(self.settings["temperature"], derive_seed(seed, k, 0, 1))

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities of every window, shape (n_windows, n_particles, 3), nm and nm/ps."""
        states = [c.getState(getPositions=True, getVelocities=True) for c in self.contexts]
        positions = np.stack([positions_nm(s.getPositions(asNumpy=True)) for s in states])
        velocities = np.stack([np.asarray(s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)) for s in states])
        return positions, velocities

    def set_state(self, positions: np.ndarray, velocities: np.ndarray) -> None:
        for context, x, v in zip(self.contexts, positions, velocities):
            context.setPositions(x)
            context.setVelocities(v)

    def step(self, n_steps: int) -> None:
        for context in self.contexts:
            context.getIntegrator().step(n_steps)


def exchange(d: np.ndarray, centres: np.ndarray, kappa: float, parity: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Metropolis swaps of neighbouring windows (k, k + 1) with ``k % 2 == parity``.

    Returns
    -------
    order : int ndarray, shape (n_windows,)
        Window ``k`` takes the configuration of window ``order[k]``.
    accepted : bool ndarray, shape (n_windows - 1,)
        Pair ``(k, k + 1)`` swapped; only pairs of the given parity are tried.
    """
    order = np.arange(len(centres))
    accepted = np.zeros(len(centres) - 1, dtype=bool)
    for k in range(parity, len(centres) - 1, 2):
        b = lambda x, c: 0.5 * kappa * (x - c) ** 2
        delta = b(d[k + 1], centres[k]) + b(d[k], centres[k + 1]) - b(d[k], centres[k]) - b(d[k + 1], centres[k + 1])
        if delta <= 0 or rng.random() < np.exp(-delta):
            order[k], order[k + 1] = k + 1, k
            accepted[k] = True
    return order, accepted


def simulate(out: Path, settings: dict, n_cycles: int, round_size: int, log=print) -> dict:
    """Run (or continue) the windows until ``n_cycles`` cycles are recorded; return the checkpoint's arrays."""
    checkpoint = out / "checkpoint.npz"
    centres = window_centres(settings["d_min"], settings["d_max"], settings["spacing"])
    system = biased_system(get_system("particle-dimer").system, settings["temperature"], settings["kappa"])
    if checkpoint.exists():
        with np.load(checkpoint) as saved:
            data = {key: saved[key] for key in saved.files}
        stored = json.loads(str(data["settings"]))
        different = {key: (stored.get(key), settings[key]) for key in SIMULATION_KEYS if stored.get(key) != settings[key]}
        if different:
            raise ValueError(f"{checkpoint} was run with other settings (stored, given): {different}")
    else:
        data = {"d": np.zeros((0, len(centres))), "accepted": np.zeros(len(centres) - 1, dtype=np.int64),
                "proposed": np.zeros(len(centres) - 1, dtype=np.int64), "wall_s": np.array(0.0)}
    cycle = len(data["d"])
    if cycle >= n_cycles:
        return data
    windows = Windows(system, centres, settings, cycle)
    if cycle == 0:
        windows.start(settings["seed"])
    else:
        windows.set_state(data["positions"], data["velocities"])
    rng = np.random.default_rng([settings["seed"], cycle])
    series, accepted, proposed = list(data["d"]), data["accepted"].copy(), data["proposed"].copy()
    started = time.perf_counter()
    while cycle < n_cycles:
        windows.step(settings["steps_per_cycle"])
        positions, velocities = windows.state()
        d = dimer_distance(positions)
        series.append(d)
        cycle += 1
        if settings["exchange"]:
            parity = cycle % 2
            order, swapped = exchange(d, centres, settings["kappa"], parity, rng)
            proposed[parity::2] += 1
            accepted += swapped
            if swapped.any():
                windows.set_state(positions[order], velocities[order])
        if cycle % round_size == 0 or cycle == n_cycles:
            positions, velocities = windows.state()
            data = {"d": np.asarray(series), "accepted": accepted, "proposed": proposed, "positions": positions,
                    "velocities": velocities, "settings": np.array(json.dumps(settings)),
                    "wall_s": np.array(float(data["wall_s"]) + time.perf_counter() - started)}
            started = time.perf_counter()
            partial = out / "checkpoint.partial.npz"
            np.savez(partial, **data)
            os.replace(partial, checkpoint)
            log(f"cycle {cycle}/{n_cycles}: wall {float(data['wall_s']):.0f} s, "
                f"exchange acceptance {np.min(accepted / np.maximum(proposed, 1)):.2f}-{np.max(accepted / np.maximum(proposed, 1)):.2f}")
    return data


def unbiased_log_weights(d_kn: np.ndarray, centres: np.ndarray, kappa: float, split: float,
                         initial_f_k: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """MBAR weights of the samples in the unbiased state, dF(open - closed) and the window free energies.

    Parameters
    ----------
    d_kn : ndarray, shape (n_windows, n_per_window), nm
        Distances recorded in each window.

    Returns
    -------
    log_w : ndarray, shape (n_windows * n_per_window,), normalised
    delta_f : float, kT
    f_k : ndarray, shape (n_windows + 1,), kT; the unbiased state first
    """
    d = d_kn.reshape(-1)
    u_kn = np.concatenate([np.zeros((1, d.size)), bias_reduced(d, centres, kappa)])
    N_k = np.concatenate([[0], np.full(len(centres), d_kn.shape[1])])
    with np.errstate(divide="ignore"):  # log N_k of the unsampled unbiased state is -inf, as it should be
        log_p, f_k = mbar_log_populations(u_kn, N_k, np.stack([d < split, d > split]), target_state=0, initial_f_k=initial_f_k)
    shifted = np.log(np.maximum(N_k, 1))[:, None] + f_k[:, None] - u_kn
    shifted[N_k == 0] = -np.inf
    top = shifted.max(axis=0)
    log_w = -(top + np.log(np.exp(shifted - top).sum(axis=0)))
    log_w -= log_w.max() + np.log(np.exp(log_w - log_w.max()).sum())
    return log_w, float(log_p[0] - log_p[1]), f_k


def analyse(d_series: np.ndarray, centres: np.ndarray, kappa: float, *, discard: int, n_bins: int, n_blocks: int,
            n_bootstrap: int, seed: int) -> dict:
    """dF(open - closed) and the profile along d, with block-bootstrap errors and the two halves."""
    split = ParticleDimer().barrier_distance()
    kept = np.asarray(d_series)[discard:]  # (n_cycles, n_windows)
    if len(kept) < 2 * n_blocks:
        raise ValueError(f"{len(kept)} cycles after discarding {discard} are too few for {n_blocks} blocks")
    edges = np.linspace(centres[0] - 0.1, centres[-1] + 0.1, n_bins + 1)
    log_w, delta_f, f_k = unbiased_log_weights(kept.T, centres, kappa, split)
    profile = free_energy_profile(kept.T.reshape(-1), log_w, bins=edges, n_bootstrap=0)
    blocks = np.array_split(np.arange(len(kept)), n_blocks)
    rng = np.random.default_rng(seed)
    boot_df, boot_profile = [], []
    for _ in range(n_bootstrap):
        rows = np.concatenate([blocks[i] for i in rng.integers(0, n_blocks, n_blocks)])
        sample = kept[rows].T
        w, df, _ = unbiased_log_weights(sample, centres, kappa, split, initial_f_k=f_k)
        boot_df.append(df)
        boot_profile.append(free_energy_profile(sample.reshape(-1), w, bins=edges, n_bootstrap=0).free_energy)
    boot_profile = np.array(boot_profile)
    finite = np.isfinite(boot_profile).all(axis=0)
    profile_error = np.full(n_bins, np.nan)
    profile_error[finite] = boot_profile[:, finite].std(axis=0, ddof=1)
    half = len(kept) // 2
    halves = [unbiased_log_weights(part.T, centres, kappa, split, initial_f_k=f_k)[1] for part in (kept[:half], kept[half:])]
    return {
        "delta_f_kT": delta_f,
        "error_kT": float(np.std(boot_df, ddof=1)),
        "halves_kT": halves,
        "split_nm": split,
        "profile": {"bin_edges_nm": edges.tolist(), "bin_centers_nm": profile.bin_centers.tolist(),
                    "free_energy_kT": profile.free_energy.tolist(), "error_kT": profile_error.tolist(),
                    "counts": profile.counts.tolist()},
        "window_free_energies_kT": f_k[1:].tolist(),
        "n_cycles_analysed": len(kept),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the checkpoint and summary.json (a run there resumes)")
    parser.add_argument("--cycles", type=int, default=4000, help="exchange cycles per window (default 4000)")
    parser.add_argument("--steps-per-cycle", type=int, default=50)
    parser.add_argument("--discard", type=int, default=200, help="first cycles left out of the analysis")
    parser.add_argument("--round", type=int, default=200, help="cycles between checkpoints")
    parser.add_argument("--temperature", type=float, default=None, help="K (default: the System's, 300 K)")
    parser.add_argument("--d-min", type=float, default=0.75, help="nm")
    parser.add_argument("--d-max", type=float, default=2.35, help="nm")
    parser.add_argument("--spacing", type=float, default=0.05, help="nm between window centres")
    parser.add_argument("--kappa", type=float, default=400.0, help="bias force constant, kT/nm^2")
    parser.add_argument("--timestep", type=float, default=0.01, help="ps")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--no-exchange", action="store_true", help="independent windows, no replica exchange")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n-bins", type=int, default=72)
    parser.add_argument("--n-blocks", type=int, default=10)
    parser.add_argument("--n-bootstrap", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        for name in ("cycles", "steps_per_cycle", "round", "n_bins", "n_blocks"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
        if not 0 <= args.discard < args.cycles:
            raise ValueError(f"--discard must lie in [0, --cycles), got {args.discard}")
        if args.kappa <= 200.0:
            raise ValueError(f"--kappa must exceed 200 kT/nm^2, the bond's negative curvature at its barrier top; got {args.kappa}")
        mol = get_system("particle-dimer")
        settings = {"temperature": float(args.temperature or mol.temperature), "d_min": args.d_min, "d_max": args.d_max,
                    "spacing": args.spacing, "kappa": args.kappa, "steps_per_cycle": args.steps_per_cycle,
                    "timestep": args.timestep, "friction": args.friction, "exchange": not args.no_exchange, "seed": args.seed}
        centres = window_centres(args.d_min, args.d_max, args.spacing)
        args.out.mkdir(parents=True, exist_ok=True)
        data = simulate(args.out, settings, args.cycles, args.round)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = analyse(data["d"][: args.cycles], centres, args.kappa, discard=args.discard, n_bins=args.n_bins,
                     n_blocks=args.n_blocks, n_bootstrap=args.n_bootstrap, seed=args.seed)
    n_windows = len(centres)
    summary = {
        "system": "particle-dimer",
        "temperature_K": settings["temperature"],
        "model_temperature": settings["temperature"] / mol.temperature,
        "states": {"closed": f"dimer_distance < {result['split_nm']!r}", "open": f"dimer_distance > {result['split_nm']!r}"},
        **result,
        "settings": {**settings, "cycles": args.cycles, "discard": args.discard, "n_blocks": args.n_blocks,
                     "n_bootstrap": args.n_bootstrap, "window_centres_nm": centres.tolist()},
        "exchange_acceptance": (data["accepted"] / np.maximum(data["proposed"], 1)).tolist() if settings["exchange"] else None,
        "md_steps": int(n_windows * args.cycles * args.steps_per_cycle),
        "wall_s": float(data["wall_s"]),
        "command": "python scripts/run_particle_dimer_umbrella.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"dF(open - closed) = {result['delta_f_kT']:.3f} +- {result['error_kT']:.3f} kT (halves "
          f"{result['halves_kT'][0]:.3f} / {result['halves_kT'][1]:.3f}); {summary['md_steps']:,} MD steps, "
          f"{summary['wall_s']:.0f} s; summary in {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
