"""Boltzmann generators for the C-alpha Go model of a small protein, and its folding equilibrium from them.

The structure-based model is :mod:`openmm_bg.molecules.go_model` (Clementi, Nymeyer &
Onuchic, J. Mol. Biol. 298, 937 (2000)); the ready-made system is ``trpzip2-go``.  Its
states are the folded and unfolded sets of :data:`~openmm_bg.molecules.go_model.GO_STATES`
on the fraction of native contacts Q.  This recipe reuses the package's pieces:

* **data**: parallel tempering with Metropolized dynamics (GHMC) over the temperatures
  of interest (:func:`openmm_bg.simulation.tempering.run_parallel_tempering`), positions
  sorted by temperature (:func:`tempering_positions`);
* **generator**: the bead chain in internal coordinates (the z-matrix follows the chain:
  each bead is placed from the three before it, so 11 bonds, 10 angles and 9 torsions for
  12 beads, rigid body removed), their normalisation, spline couplings and a Gaussian
  prior, trained by example, optionally then by example and energy
  (:func:`openmm_bg.training.recipe.train_molecular_generator`) at one temperature
  (:func:`train_go_generator`), keeping the parameters with the best held-out likelihood;
* **estimate**: importance weights of generator samples reweighted to any temperature
  (the model's energy does not depend on T, so ``u_T = u_T0 T0 / T``), the folded
  fraction and ``dF = F(unfolded) - F(folded)`` with the package's bootstrap and Pareto
  k-hat diagnostics (:func:`openmm_bg.analysis.states.state_free_energy`), in
  :func:`folding_from_generator`;
* **exact sampling**: GHMC mixed with :class:`~openmm_bg.moves.BoltzmannGeneratorMove`
  in an openmmtools ``SequenceMove`` (:func:`run_chain`), the folded fraction from the
  chain with an error from its statistical inefficiency (:func:`folding_from_chain`).

Training by energy is off by default (``DEFAULT_KL["n_iterations"] = 0``): on trpzip2 at
349.7 K (5,040 training frames), 300 iterations by example and energy after the ML stage (w_ml 1, w_kl ramped to 1,
learning rate 1e-4, float32 or float64) lowered the reverse KL only from 78 to 71-73 nats and
cut the Kish ESS of 30,000 samples from 1.2 % to 0.3-0.9 % with k-hat 0.90-0.95 (ML alone:
0.73), so the energy enters through the importance weights and the Metropolis-Hastings
ratio only.  What limits the generators is data: the held-out likelihood stops improving
after 25-100 ML iterations, and twice the frames (11,200 per temperature) raised the ESS at
349.7 K from 1.2 % to 3.0 %.

``scripts/run_go_generator.py`` runs the whole study and ``benchmarks/protein_mixing.py``
measures the move's mixing against MD alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._validation import ensure_count, ensure_positive

if TYPE_CHECKING:
    from ..generator.model import BoltzmannGenerator
    from ..molecules.systems import MolecularSystem
    from ..training.recipe import MolecularTraining

__all__ = [
    "GO_SYSTEM",
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_ML",
    "DEFAULT_KL",
    "GHMC_SETTINGS",
    "load_go_reference",
    "go_molecule",
    "tempering_positions",
    "read_tempering_positions",
    "train_go_generator",
    "draw_weighted",
    "folding_from_weights",
    "folding_from_generator",
    "run_chain",
    "folding_from_chain",
    "q_cores",
    "compare_with_reference",
]

#: the ready-made Go model this recipe is for
GO_SYSTEM = "trpzip2-go"
#: a small spline flow: 30 internal coordinates
DEFAULT_ARCHITECTURE = {"n_blocks": 4, "hidden": [64, 64], "coupling": "spline", "n_bins": 8}
#: by example, on the tempering frames of one temperature, keeping the best held-out likelihood
DEFAULT_ML = {"n_iterations": 400, "batch_size": 256, "learning_rate": 1e-3, "lr_schedule": "cosine", "weight_decay": 1e-5,
              "validate_every": 25, "keep": "best"}
#: then by example and energy (the KL weight ramped in); off by default, see the module notes
DEFAULT_KL = {
    "n_iterations": 0, "batch_size": 256, "kl_batch_size": 256, "learning_rate": 1e-4, "lr_schedule": "cosine",
    "w_ml": 1.0, "w_kl": [[0, 0.0], [100, 1.0]], "energy_cut": 100.0, "nonfinite": "drop",
}
#: the Metropolized dynamics of the reference (benchmarks/results/go-model-reference): ps, 1/ps
GHMC_SETTINGS = {"timestep": 0.015, "collision_rate": 5.0}
#: Q cores for counting folding transitions, with a dead zone between them (F(Q) has its unfolded
#: basin near Q = 0.25 and its folded one near 0.9-1): unfolded Q <= 0.35, folded Q >= 0.75
Q_CORES = (0.35, 0.75)


def load_go_reference(path: str | os.PathLike = "benchmarks/results/go-model-reference/reference.json") -> dict:
    """The tempering reference of ``scripts/run_go_reference.py``: temperatures (K), p_folded, dF and their errors.

    Returns
    -------
    dict
        ``temperatures``, ``p_folded``, ``p_folded_err``, ``dF``, ``dF_err`` (arrays over
        the reference temperatures) and ``record`` (the whole file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Go-model reference not found: {path} (run scripts/run_go_reference.py --analyze)")
    record = json.loads(path.read_text())
    rows = record.get("temperatures")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path} holds no per-temperature results")
    out = {key: np.array([float(row[name]) for row in rows]) for key, name in (
        ("temperatures", "temperature_K"), ("p_folded", "p_folded"), ("p_folded_err", "p_folded_err"), ("dF", "dF_kT"), ("dF_err", "dF_err"))}
    out["record"] = record
    return out


def go_molecule(temperature: float | None = None, name: str = GO_SYSTEM) -> "MolecularSystem":
    """The ready-made Go model (``trpzip2-go``) at ``temperature`` K (default: the registered 300 K)."""
    from ..molecules.systems import get_system

    molecule = get_system(name)
    if "q_native" not in molecule.collective_variables or not {"folded", "unfolded"} <= set(molecule.states):
        raise ValueError(f"{name} is not a Go model: it needs the CV q_native and the states folded and unfolded")
    if temperature is None:
        return molecule
    return dataclasses.replace(molecule, temperature=ensure_positive(temperature, "temperature", "K"))


def tempering_positions(
    molecule: "MolecularSystem",
    temperatures: Sequence[float],
    storage: str | os.PathLike,
    n_iterations: int,
    *,
    steps_per_iteration: int = 250,
    seed: int = 0,
    discard: int = 50,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Run (or resume) GHMC parallel tempering and return its positions sorted by temperature.

    Parameters
    ----------
    molecule : MolecularSystem
        Started from its positions (the native structure for a Go model).
    temperatures : sequence of float, K
    storage : path
        NetCDF file; resumed when it exists.
    n_iterations : int
    steps_per_iteration : int
        GHMC steps (:data:`GHMC_SETTINGS`) per iteration and replica.
    seed : int
    discard : int
        Iterations dropped at the start (the native start).

    Returns
    -------
    positions : float64 ndarray, shape (n_temperatures, n_frames, n_atoms, 3), nm
    energy_evaluations : int
        Of the whole run (:func:`openmm_bg.simulation.tempering.energy_evaluations`).
    """
    from ..simulation.tempering import energy_evaluations, read_parallel_tempering, run_parallel_tempering

    n_iterations = ensure_count(n_iterations, "n_iterations")
    discard = ensure_count(discard, "discard", 0)
    if discard >= n_iterations:
        raise ValueError(f"discard ({discard}) must be smaller than n_iterations ({n_iterations})")
    run_parallel_tempering(
        molecule.system, molecule.positions, temperatures, storage, n_iterations, steps_per_iteration=steps_per_iteration,
        platform=molecule.platform, seed=seed, progress=progress, integrator="ghmc", chunk=50, **GHMC_SETTINGS,
    )
    positions = read_tempering_positions([storage], discard)
    data = read_parallel_tempering(storage, positions=False)
    return positions, energy_evaluations(data.n_iterations - 1, len(data.temperatures), data.steps_per_iteration)


def read_tempering_positions(storages: Sequence[str | os.PathLike], discard: int = 0, iterations: int | None = None) -> np.ndarray:
    """Positions of parallel-tempering runs (:func:`run_parallel_tempering` files, read only), sorted by temperature.

    Parameters
    ----------
    storages : sequence of path
        Runs at the same temperatures; their frames are concatenated run after run.
    discard : int
        Iterations dropped at the start of each run.
    iterations : int, optional
        Use iterations ``[discard, iterations)`` of each run (default: all stored).

    Returns
    -------
    float64 ndarray, shape (n_temperatures, n_frames, n_atoms, 3), nm
    """
    from ..simulation.tempering import read_parallel_tempering

    discard = ensure_count(discard, "discard", 0)
    chunks, temperatures = [], None
    for storage in storages:
        data = read_parallel_tempering(storage)
        if temperatures is not None and not np.allclose(data.temperatures, temperatures):
            raise ValueError(f"{storage} was run at other temperatures than {list(storages)[0]}")
        temperatures = data.temperatures
        states = data.replica_states[data.checkpoint_iterations]
        order = np.argsort(states, axis=1)
        xyz = np.take_along_axis(data.positions, order[:, :, None, None], axis=1)  # (n_checkpoints, n_states, n_atoms, 3)
        keep = (data.checkpoint_iterations >= discard) & (data.checkpoint_iterations < (iterations or np.inf))
        chunks.append(xyz[keep])
    if not chunks:
        raise ValueError("give at least one tempering run")
    return np.ascontiguousarray(np.concatenate(chunks).transpose(1, 0, 2, 3), dtype=np.float64)


def train_go_generator(
    molecule: "MolecularSystem",
    positions: np.ndarray,
    *,
    seed: int = 0,
    architecture: dict | None = None,
    ml: dict | None = None,
    kl: dict | None = None,
    validation_fraction: float = 0.1,
    progress: bool = False,
) -> "MolecularTraining":
    """Train a generator of the bead chain at ``molecule.temperature``: by example, then by example and energy.

    Parameters
    ----------
    molecule : MolecularSystem
        The Go model at the training temperature (:func:`go_molecule`).
    positions : ndarray, shape (n_frames, n_beads, 3), nm
        Equilibrium frames at that temperature (e.g. from :func:`tempering_positions`);
        the last ``validation_fraction`` of them is held out and scored.
    seed : int
        Network initialisation; the stages use ``seed`` and ``seed + 1``.
    architecture, ml, kl : dict, optional
        Merged over :data:`DEFAULT_ARCHITECTURE`, :data:`DEFAULT_ML`, :data:`DEFAULT_KL`;
        the energy stage runs when ``kl["n_iterations"]`` is positive (default 0).

    Returns
    -------
    MolecularTraining
        Save it with ``.save(path, molecule)``; the checkpoint records the temperature.
    """
    from ..molecules.trajectories import hold_out_final
    from ..training.recipe import TrainingFrames, check_fraction, train_molecular_generator
    from ..training.trainer import TrainingConfig

    x = np.asarray(positions, dtype=np.float64)
    n_atoms = molecule.system.getNumParticles()
    if x.ndim != 3 or x.shape[1:] != (n_atoms, 3):
        raise ValueError(f"positions must have shape (n_frames, {n_atoms}, 3) in nm, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("positions must be finite")
    train, held = hold_out_final(x, check_fraction(validation_fraction, "validation_fraction"))
    if len(train) < 2:
        raise ValueError(f"{len(x)} frames leave {len(train)} to train on; give more frames")
    stages = [TrainingConfig.from_dict({**DEFAULT_ML, "seed": seed, **(ml or {})})]
    kl = {**DEFAULT_KL, "seed": seed + 1, **(kl or {})}
    if kl["n_iterations"]:
        stages.append(TrainingConfig.from_dict(kl))
    frames = TrainingFrames(train, held, {"tempering": len(train)})
    return train_molecular_generator(molecule, frames, stages, seed=seed, architecture={**DEFAULT_ARCHITECTURE, **(architecture or {})},
                                     progress=progress)


def draw_weighted(generator: "BoltzmannGenerator", n: int, *, tau: float = 1.0, seed: int = 0, batch_size: int = 10000) -> dict[str, Any]:
    """``n`` generator samples at the relative temperature ``tau`` with their densities and target energies.

    Batches of :meth:`BoltzmannGenerator.sample` (samples outside the coordinate domain are
    dropped and counted).  Returns ``positions`` (n_kept, n_atoms, 3) nm, ``u0`` (reduced
    energy at the generator's temperature T0, ``+inf`` for a failed one), ``log_prob``
    (the tempered generator's log density), ``n_requested``, ``n_out_of_domain``,
    ``energy_evaluations`` and ``wall_s``.
    """
    import torch

    n, batch_size = ensure_count(n, "n"), ensure_count(batch_size, "batch_size")
    tau = ensure_positive(tau, "tau")
    rng = torch.Generator().manual_seed(int(seed))
    kept: dict[str, list] = {"positions": [], "u0": [], "log_prob": []}
    n_out, start = 0, time.perf_counter()
    for first in range(0, n, batch_size):
        sample = generator.sample(min(batch_size, n - first), temperature=tau, generator=rng)
        keep = sample.in_domain
        kept["positions"].append(sample.x[keep].double().numpy())
        kept["u0"].append((sample.energy[keep] * tau).double().numpy())  # sample.energy is u0 / tau
        kept["log_prob"].append(sample.log_prob[keep].double().numpy())
        n_out += sample.n_out_of_domain
    out = {key: np.concatenate(value) for key, value in kept.items()}
    out.update(n_requested=n, n_out_of_domain=int(n_out), energy_evaluations=int(out["u0"].shape[0]), wall_s=time.perf_counter() - start)
    return out


def folding_from_weights(
    log_weight: np.ndarray, q: np.ndarray, *, n_out_of_domain: int = 0, n_bootstrap: int = 200, seed: int = 0,
) -> dict[str, Any]:
    """Folded fraction and ``dF = F(unfolded) - F(folded)`` (kT) from importance weights.

    ``dF`` and its error come from :func:`openmm_bg.analysis.states.state_free_energy`
    (bootstrap over all samples drawn; Pareto k-hat, Kish ESS and per-state ESS, warnings);
    ``p_folded = 1 / (1 + exp(-dF))`` and its error by the delta method,
    ``p (1 - p) err(dF)``.  States: folded ``q > 0.5``, unfolded ``q < 0.5``
    (:data:`~openmm_bg.molecules.go_model.GO_STATES`).
    """
    from ..analysis.states import state_free_energy

    q = np.asarray(q, dtype=np.float64)
    folded, unfolded = q > 0.5, q < 0.5
    result = state_free_energy(log_weight, folded, unfolded, n_out_of_domain=n_out_of_domain, n_bootstrap=n_bootstrap, seed=seed,
                               names=("folded", "unfolded"), warn=False)
    df, err = float(result["delta_f_kT"]), float(result["error_kT"])
    p = 1.0 / (1.0 + math.exp(-df))
    return {"p_folded": p, "p_folded_err": p * (1 - p) * err, "dF": df, "dF_err": err,
            **{key: result[key] for key in ("kish_ess", "k_hat", "k_hat_threshold", "ess_a", "ess_b", "n_a", "n_b", "reliable", "warnings")}}


def folding_from_generator(
    generator: "BoltzmannGenerator",
    trained_at: float,
    temperatures: Sequence[float],
    q_native,
    *,
    n_samples: int = 20000,
    tempered: bool = True,
    n_bootstrap: int = 200,
    seed: int = 0,
    batch_size: int = 10000,
) -> list[dict[str, Any]]:
    """The folded fraction at each temperature from samples of one generator trained at ``trained_at`` K.

    At each target temperature ``T`` it draws ``n_samples`` at the relative temperature
    ``tau = T / trained_at`` (the prior widened by ``sqrt(tau)``; ``tempered=False``
    draws at ``tau = 1``) and weights them by ``log w = -u0 trained_at / T - log p``: the
    Go model's energy does not depend on T.  Returns one :func:`folding_from_weights`
    dict per temperature, plus ``temperature_K``, ``tau``, ``energy_evaluations``, ``wall_s``.
    """
    trained_at = ensure_positive(trained_at, "trained_at", "K")
    rows = []
    for k, temperature in enumerate(temperatures):
        temperature = ensure_positive(temperature, "temperature", "K")
        tau = temperature / trained_at if tempered else 1.0
        drawn = draw_weighted(generator, n_samples, tau=tau, seed=seed + k, batch_size=batch_size)
        with np.errstate(invalid="ignore"):
            log_w = np.where(np.isfinite(drawn["u0"]), -drawn["u0"] * trained_at / temperature - drawn["log_prob"], -np.inf)
        row = folding_from_weights(log_w, q_native(drawn["positions"]), n_out_of_domain=drawn["n_out_of_domain"],
                                   n_bootstrap=n_bootstrap, seed=seed + k)
        row.update(temperature_K=float(temperature), tau=float(tau), n_samples=n_samples,
                   energy_evaluations=drawn["energy_evaluations"], wall_s=drawn["wall_s"])
        rows.append(row)
    return rows


def run_chain(
    molecule: "MolecularSystem",
    x0: np.ndarray,
    budget: int,
    *,
    md_steps: int,
    proposals: int = 0,
    generator: str | os.PathLike | None = None,
    reference_temperature: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """GHMC (:data:`GHMC_SETTINGS`) alone or mixed with a BoltzmannGeneratorMove, until ``budget`` energy evaluations.

    Each cycle runs ``md_steps`` GHMC steps (one evaluation each) and, when ``proposals``
    is positive, one :class:`~openmm_bg.moves.BoltzmannGeneratorMove` application with
    ``proposals`` proposals (``proposals + 1`` evaluations: the move also evaluates the
    current configuration); Q is recorded after every cycle.

    Parameters
    ----------
    molecule : MolecularSystem
        At the temperature to sample.
    x0 : ndarray, shape (n_atoms, 3), nm
    budget : int
    md_steps, proposals : int
    generator : path, optional
        Checkpoint of the generator (required when ``proposals > 0``).
    reference_temperature : float, K, optional
        Temperature the generator was trained at (the move then proposes at the relative
        temperature); None proposes with the generator as it is.
    seed : int

    Returns
    -------
    dict
        ``q`` (ndarray, per cycle), ``evaluations``, ``cycles``, ``acceptance`` (NaN for
        MD alone), ``statistics`` (the move's), ``wall_s``.
    """
    import openmm
    import openmm.unit as unit
    from openmmtools import cache, mcmc, states

    from ..moves import BoltzmannGeneratorMove
    from ..simulation.langevin import SeededGHMCMove

    budget, md_steps = ensure_count(budget, "budget"), ensure_count(md_steps, "md_steps")
    proposals = ensure_count(proposals, "proposals", 0)
    if proposals and generator is None:
        raise ValueError("a chain with BG proposals needs the generator checkpoint")
    x0 = np.asarray(x0, dtype=np.float64)
    thermodynamic_state = states.ThermodynamicState(molecule.system, molecule.temperature * unit.kelvin)
    sampler_state = states.SamplerState(x0 * unit.nanometer)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName(molecule.platform))
    md = SeededGHMCMove(n_steps=md_steps, seed=seed, **GHMC_SETTINGS)
    move = md
    if proposals:
        bg = BoltzmannGeneratorMove(generator, n_proposals=proposals, reference_temperature=reference_temperature, seed=seed)
        move = mcmc.SequenceMove([md, bg])
    per_cycle = md_steps + (proposals + 1 if proposals else 0)
    n_cycles = -(-budget // per_cycle)
    q_cv = molecule.collective_variables["q_native"]
    q = np.empty(n_cycles)
    start = time.perf_counter()
    for cycle in range(n_cycles):
        move.apply(thermodynamic_state, sampler_state, context_cache)
        q[cycle] = q_cv(np.asarray(sampler_state.positions.value_in_unit(unit.nanometer))[None])[0]
    wall = time.perf_counter() - start
    applied = move.move_list[1] if proposals else None  # SequenceMove applies its own copy of the move
    return dict(q=q, evaluations=n_cycles * per_cycle, cycles=n_cycles, wall_s=wall,
                acceptance=applied.acceptance_rate if applied is not None else float("nan"),
                statistics=applied.statistics if applied is not None else {})


def folding_from_chain(q: np.ndarray, discard: int = 0) -> dict[str, float]:
    """Folded fraction and dF from a Markov chain's Q series, errors from its statistical inefficiency.

    ``g`` is that of the folded indicator (:func:`openmm_bg.analysis.states.decorrelated`);
    ``err(p) = sqrt(p (1 - p) g / n)`` and ``err(dF) = err(p) / (p (1 - p))``.
    """
    from ..analysis.states import decorrelated

    q = np.asarray(q, dtype=np.float64)[ensure_count(discard, "discard", 0):]
    if q.size < 3:
        raise ValueError(f"the chain has {q.size} frames after the discard; give more")
    folded = (q > 0.5).astype(np.float64)
    _, g = decorrelated(folded, "folded indicator")
    p = float(folded.mean())
    err = math.sqrt(max(p * (1 - p), 0.0) * g / q.size)
    if 0 < p < 1:
        df, df_err = math.log(p / (1 - p)), err / (p * (1 - p))
    else:
        df, df_err = (math.inf if p == 1 else -math.inf), math.inf
    return {"p_folded": p, "p_folded_err": err, "dF": df, "dF_err": df_err, "statistical_inefficiency": g, "n": int(q.size)}


def q_cores(q: np.ndarray, cores: tuple[float, float] = Q_CORES) -> np.ndarray:
    """Core of each Q value: -1 unfolded (``Q <= cores[0]``), +1 folded (``Q >= cores[1]``), 0 between."""
    q = np.asarray(q, dtype=np.float64)
    low, high = cores
    if not low < high:
        raise ValueError(f"cores must be (unfolded_max, folded_min) with unfolded_max < folded_min, got {cores}")
    labels = np.zeros(q.shape, dtype=np.int8)
    labels[q <= low] = -1
    labels[q >= high] = 1
    return labels


def compare_with_reference(values: np.ndarray, errors: np.ndarray, reference: np.ndarray, reference_errors: np.ndarray) -> np.ndarray:
    """z-scores ``(value - reference) / sqrt(err^2 + err_ref^2)``; ``|z| <= 2`` is agreement within the combined 2 sigma."""
    values, errors = np.asarray(values, dtype=float), np.asarray(errors, dtype=float)
    return (values - np.asarray(reference, dtype=float)) / np.hypot(errors, np.asarray(reference_errors, dtype=float))
