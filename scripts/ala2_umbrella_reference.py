"""Umbrella-sampling reference for ala2-vacuum: the phi free-energy profile and dF at 300 K.

An independent check of the parallel-tempering reference (data/ala2-vacuum-reference.json),
which used hydrogen-mass repartitioning (4 Da) and a 2 fs time step without constraints.
Here the time step and the masses are options (default: 1 fs, true masses), so the
integrator bias can be measured directly.

Method
------
* ``n_windows`` windows along phi (C-N-CA-C), centres ``theta0 = -180, -170, ... deg``,
  each with a periodic harmonic-cosine bias ``E = 0.5 k (1 - cos(phi - theta0))``
  (an OpenMM CustomTorsionForce added to a copy of ``get_system("ala2-vacuum")``).
* Each window starts from whichever bundled structure has phi closest to ``theta0``
  (the extended start structure of ``get_system``, phi = -180 deg, or the C7ax structure
  ``data/ala2-vacuum-c7ax-start.pdb``, phi = +62 deg), is minimised, pulled to ``theta0``
  by moving the restraint centre along the shorter arc (``--pull-ps``, stiff restraint),
  equilibrated with the window's own bias (``--equilibration-ps``), all discarded; then
  ``--steps-per-window`` steps of LangevinMiddleIntegrator at 300 K are run, recording
  phi and psi every ``--record-every`` steps (Reference platform, one thread per process).
* Windows are either independent (``--workers`` spawned processes), or, with
  ``--replica-exchange``, coupled by Hamiltonian replica exchange: all windows in one
  process, neighbouring windows (a ring) try to swap configurations every
  ``--record-every`` steps, accepted with the Metropolis criterion on the bias energies.
  Independent windows are not enough for ala2: near phi = 0 the two psi channels (C7eq-like
  psi ~ +80 deg and C7ax-like psi ~ -70 deg) exchange only a few times per ns inside a
  window, and the loop-closure check below fails (by 0.7 kT with 1 ns per window);
  exchange between windows brings both channels in and the check passes.
* Analysis: MBAR (pymbar 4) on the reduced bias energies ``u_kn[k, n] = E_k(phi_n) / kT``
  (the unbiased potential cancels), the unbiased populations of phi > 0 (0 < phi < pi)
  and phi < 0, ``dF = F(phi > 0) - F(phi < 0) = -ln(P(phi > 0) / P(phi < 0))``, and the
  free-energy profile on ``--n-bins`` bins of phi.  Errors: a block bootstrap (each
  window's series cut into ``--n-blocks`` blocks, blocks resampled within each window, or
  the same blocks for all windows with replica exchange; ``--n-bootstrap`` resamples);
  the same with other block counts as a sensitivity check; the estimates from the first
  and second halves of every window; and MBAR's analytic error (which treats every
  recorded sample as independent, so is too small).  Halves and resamples are solved by a
  small Newton MBAR with a count per sample (checked against pymbar on the full data).
* Loop closure: the two basins are joined by two barriers (phi ~ 0 and phi ~ 120 deg);
  dF computed with the windows of one barrier left out (so through the other barrier
  only) must agree between the two (``PATHS``); a difference beyond its bootstrap error
  means some window does not sample its slow orthogonal degrees of freedom.

Raw per-window time series go to ``OUT/window_XX.npz`` (reused when the settings match,
so an interrupted run resumes and a re-run only redoes the analysis), the summary to
``OUT/summary.json`` and, with ``--json``, to a bundled data file.

    OPENMM_CPU_THREADS=1 nice -n 10 python scripts/ala2_umbrella_reference.py runs/issue7/umbrella-reus --replica-exchange
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

MOLAR_GAS_CONSTANT = 0.00831446261815324  # kJ/(mol K), as openmm.unit
ROOT = Path(__file__).resolve().parent.parent
C7AX_START = ROOT / "data" / "ala2-vacuum-c7ax-start.pdb"


# --- geometry -------------------------------------------------------------------------------


def dihedral(xyz: np.ndarray, indices) -> np.ndarray:
    """Dihedral angle (rad, in (-pi, pi]) of atoms ``indices`` in frames ``xyz`` (n, n_atoms, 3); mdtraj's convention."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    p0, p1, p2, p3 = (xyz[:, int(i)] for i in indices)
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    c12, c23 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.einsum("ij,ij->i", b1, c23)
    x = np.einsum("ij,ij->i", c12, c23)
    return np.arctan2(y, x)


def wrap(angle):
    """Angle(s) mapped to (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(angle, dtype=np.float64), 2 * np.pi)


# --- simulation (runs in worker processes) --------------------------------------------------

_CACHE: dict = {}


def _setup(hydrogen_mass):
    """The unbiased system (optionally repartitioned), topology, dihedral indices and start structures; cached per process."""
    key = hydrogen_mass
    if key in _CACHE:
        return _CACHE[key]
    import mdtraj as md
    import openmm

    from openmm_bg.molecules.collective_variables import backbone_dihedral_indices
    from openmm_bg.simulation.langevin import repartition_hydrogen_mass
    from openmm_bg.molecules.systems import get_system

    mol = get_system("ala2-vacuum")
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(mol.system))
    if hydrogen_mass is not None:
        system = repartition_hydrogen_mass(system, mol.openmm_topology, hydrogen_mass)
    phi_idx = [int(i) for i in backbone_dihedral_indices(mol.topology, "phi")[0]]
    psi_idx = [int(i) for i in backbone_dihedral_indices(mol.topology, "psi")[0]]
    c7ax = md.load(str(C7AX_START)).xyz[0].astype(np.float64)
    starts = [np.asarray(mol.positions, dtype=np.float64), c7ax]
    _CACHE[key] = (mol, system, phi_idx, psi_idx, starts)
    return _CACHE[key]


def window_seed(seed: int, window: int) -> int:
    """A positive 31-bit seed for one window, derived from the run seed."""
    return int(np.random.SeedSequence([int(seed), int(window)]).generate_state(1)[0] % (2**31 - 2)) + 1


SETTING_KEYS = ("window", "theta0", "k", "steps", "record_every", "timestep", "friction", "temperature", "seed",
                "hydrogen_mass", "pull_steps", "equilibration_steps", "replica_exchange")


def _prepared_window(task: dict):
    """A context for one window, minimised and pulled to theta0 (restraint at the window's own k afterwards)."""
    import openmm
    from openmm import unit

    mol, base, phi_idx, psi_idx, starts = _setup(task["hydrogen_mass"])
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(base))
    bias = openmm.CustomTorsionForce("0.5*k_bias*(1 - cos(theta - theta0))")
    bias.addGlobalParameter("k_bias", task["k"])
    bias.addGlobalParameter("theta0", task["theta0"])
    bias.addTorsion(*phi_idx, [])
    system.addForce(bias)

    seed = window_seed(task["seed"], task["window"])
    temperature = task["temperature"] * unit.kelvin
    integrator = openmm.LangevinMiddleIntegrator(temperature, task["friction"] / unit.picosecond,
                                                 task["timestep"] * unit.picoseconds)
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))

    # start from the bundled structure nearest in phi; minimise with the restraint at its own phi
    start_phis = [float(dihedral(s, phi_idx)[0]) for s in starts]
    start = int(np.argmin([abs(float(wrap(p - task["theta0"]))) for p in start_phis]))
    context.setPositions(starts[start])
    context.setParameter("k_bias", max(task["k"], 1000.0))
    context.setParameter("theta0", start_phis[start])
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(temperature, seed)
    # pull the restraint centre along the shorter arc to theta0
    delta = float(wrap(task["theta0"] - start_phis[start]))
    chunk = 100
    n_chunks = max(1, task["pull_steps"] // chunk)
    for c in range(n_chunks):
        context.setParameter("theta0", float(wrap(start_phis[start] + delta * (c + 1) / n_chunks)))
        integrator.step(chunk)
    context.setParameter("theta0", task["theta0"])
    context.setParameter("k_bias", task["k"])
    info = dict(start_structure=start, start_phi=start_phis[start], pull_steps_done=n_chunks * chunk, window_seed=seed)
    return context, integrator, phi_idx, psi_idx, info


def _positions(context):
    from openmm import unit

    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def _reusable(task: dict) -> bool:
    out = Path(task["out"]) / f"window_{task['window']:02d}.npz"
    if not out.exists():
        return False
    with np.load(out, allow_pickle=False) as f:
        stored = json.loads(str(f["settings"]))
    stored.setdefault("replica_exchange", False)  # files written before the option existed
    return stored == {k: task[k] for k in SETTING_KEYS}


def run_window(task: dict) -> dict:
    """Pull, equilibrate and sample one independent umbrella window; save and return its phi/psi series."""
    out = Path(task["out"]) / f"window_{task['window']:02d}.npz"
    if _reusable(task):
        with np.load(out, allow_pickle=False) as f:
            return {"window": task["window"], "file": str(out), "reused": True, "wall_s": float(f["wall_s"])}
    t_start = time.time()
    context, integrator, phi_idx, psi_idx, info = _prepared_window(task)
    integrator.step(task["equilibration_steps"])
    phi_after_equilibration = float(dihedral(_positions(context), phi_idx)[0])

    n_records = task["steps"] // task["record_every"]
    phi = np.empty(n_records)
    psi = np.empty(n_records)
    t_sample = time.time()
    for n in range(n_records):
        integrator.step(task["record_every"])
        xyz = _positions(context)
        phi[n] = dihedral(xyz, phi_idx)[0]
        psi[n] = dihedral(xyz, psi_idx)[0]
    sample_s = time.time() - t_sample
    md_steps = info["pull_steps_done"] + task["equilibration_steps"] + n_records * task["record_every"]
    wall_s = time.time() - t_start
    np.savez(out, phi=phi, psi=psi, final_positions=np.asarray(_positions(context)),
             settings=json.dumps({k: task[k] for k in SETTING_KEYS}), start_structure=info["start_structure"],
             start_phi=info["start_phi"], phi_after_equilibration=phi_after_equilibration, md_steps=md_steps,
             wall_s=wall_s, sample_steps_per_s=n_records * task["record_every"] / sample_s,
             window_seed=info["window_seed"])
    return {"window": task["window"], "file": str(out), "reused": False, "wall_s": wall_s,
            "steps_per_s": n_records * task["record_every"] / sample_s}


def run_replica_exchange(tasks: list[dict], log_every: int = 1000) -> dict:
    """Hamiltonian replica exchange between neighbouring windows (ring), all contexts in this process.

    Every ``record_every`` steps each window records phi and psi of its configuration, then
    neighbour pairs (alternately (0,1), (2,3), ... and (1,2), ..., (K-1,0)) attempt to swap
    configurations (positions and velocities) with the Metropolis probability
    ``min(1, exp(-[b_i(x_j) + b_j(x_i) - b_i(x_i) - b_j(x_j)] / kT))`` on the bias energies alone.
    Equilibration (``equilibration_steps``, with exchanges) is discarded.
    """
    if all(_reusable(t) for t in tasks):
        print("  all windows reused", flush=True)
        return {"reused": True}
    t_start = time.time()
    n_windows = len(tasks)
    task0 = tasks[0]
    kT = MOLAR_GAS_CONSTANT * task0["temperature"]
    k = task0["k"]
    theta0 = np.array([t["theta0"] for t in tasks])
    windows = [_prepared_window(t) for t in tasks]
    phi_idx, psi_idx = windows[0][2], windows[0][3]
    print(f"  {n_windows} windows pulled in {time.time() - t_start:.0f} s", flush=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(task0["seed"]), 999_999]))
    every = task0["record_every"]
    n_equilibration = task0["equilibration_steps"] // every
    n_records = task0["steps"] // every
    phi = np.empty((n_windows, n_records))
    psi = np.empty((n_windows, n_records))
    replica_in_window = np.empty((n_windows, n_records), dtype=np.int16)
    replica = np.arange(n_windows)          # replica id now in each window
    unwrapped = np.arange(n_windows)        # each replica's window index, unwrapped around the ring
    lowest, highest = unwrapped.copy(), unwrapped.copy()
    attempts = np.zeros(n_windows, dtype=np.int64)  # pair (w, w+1 mod K)
    accepted = np.zeros(n_windows, dtype=np.int64)

    def bias(w, angle):
        return 0.5 * k * (1.0 - np.cos(angle - theta0[w])) / kT

    t_sample = time.time()
    for cycle in range(n_equilibration + n_records):
        current_phi = np.empty(n_windows)
        current_psi = np.empty(n_windows)
        for w, (context, integrator, *_rest) in enumerate(windows):
            integrator.step(every)
            xyz = _positions(context)
            current_phi[w] = dihedral(xyz, phi_idx)[0]
            current_psi[w] = dihedral(xyz, psi_idx)[0]
        production = cycle >= n_equilibration
        if production:
            n = cycle - n_equilibration
            phi[:, n], psi[:, n], replica_in_window[:, n] = current_phi, current_psi, replica
            if n == 0:
                t_sample = time.time()
        for i in range(cycle % 2, n_windows, 2):
            j = (i + 1) % n_windows
            if j == i or (n_windows % 2 == 1 and i == n_windows - 1):  # odd ring: skip the wrap pair
                continue
            delta = (bias(i, current_phi[j]) + bias(j, current_phi[i]) - bias(i, current_phi[i]) - bias(j, current_phi[j]))
            if production:
                attempts[i] += 1
            if delta <= 0 or rng.random() < np.exp(-delta):
                ci, cj = windows[i][0], windows[j][0]
                si = ci.getState(getPositions=True, getVelocities=True)
                sj = cj.getState(getPositions=True, getVelocities=True)
                ci.setPositions(sj.getPositions(asNumpy=True))
                ci.setVelocities(sj.getVelocities(asNumpy=True))
                cj.setPositions(si.getPositions(asNumpy=True))
                cj.setVelocities(si.getVelocities(asNumpy=True))
                current_phi[[i, j]] = current_phi[[j, i]]
                ri, rj = replica[i], replica[j]
                replica[i], replica[j] = rj, ri
                unwrapped[ri] += 1  # one window forward around the ring (also from K-1 to 0)
                unwrapped[rj] -= 1
                if production:
                    accepted[i] += 1
        if production:
            np.minimum(lowest, unwrapped, out=lowest)
            np.maximum(highest, unwrapped, out=highest)
        if (cycle + 1) % log_every == 0:
            print(f"  cycle {cycle + 1}/{n_equilibration + n_records} after {time.time() - t_start:.0f} s", flush=True)
    sample_s = time.time() - t_sample
    wall_s = time.time() - t_start
    span = highest - lowest
    for w, task in enumerate(tasks):
        context, integrator, _, _, info = windows[w]
        md_steps = info["pull_steps_done"] + (n_equilibration + n_records) * every
        np.savez(Path(task["out"]) / f"window_{w:02d}.npz", phi=phi[w], psi=psi[w],
                 replica=replica_in_window[w], final_positions=np.asarray(_positions(context)),
                 settings=json.dumps({key: task[key] for key in SETTING_KEYS}), start_structure=info["start_structure"],
                 start_phi=info["start_phi"], md_steps=md_steps, wall_s=wall_s / n_windows,
                 sample_steps_per_s=n_windows * n_records * every / sample_s, window_seed=info["window_seed"],
                 exchange_attempts=attempts[w], exchange_accepted=accepted[w])
    exchange = dict(acceptance_by_pair=[round(float(a / max(t, 1)), 4) for a, t in zip(accepted, attempts)],
                    replica_window_span=[int(x) for x in span],
                    replicas_around_the_ring=int(np.sum(span >= n_windows)),
                    note="pair i is windows (i, i+1 mod K); span: range of windows a replica visited in production, "
                         "unwrapped around the ring (>= K: it went all the way round)")
    (Path(tasks[0]["out"]) / "exchange.json").write_text(json.dumps(exchange, indent=1))
    print(f"  exchange acceptance min {min(exchange['acceptance_by_pair']):.3f}; "
          f"{exchange['replicas_around_the_ring']}/{n_windows} replicas went round the ring; {wall_s:.0f} s", flush=True)
    return exchange


# --- analysis -------------------------------------------------------------------------------


def bias_reduced(phi: np.ndarray, theta0: np.ndarray, k: float, kT: float) -> np.ndarray:
    """u_kn[k, n] = 0.5 k (1 - cos(phi_n - theta0_k)) / kT."""
    return 0.5 * k * (1.0 - np.cos(phi[None, :] - theta0[:, None])) / kT


def _logsumexp(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


class WeightedMBAR:
    """MBAR for umbrella windows with a multiplicity (count) per sample, solved by Newton's method.

    A block-bootstrap resample or a half of the data is the full set of samples with counts
    ``c_n`` (0, 1, 2, ...), so the bias matrix ``Q[k, n] = exp(-u_kn)`` is computed once.
    The free energies ``f_k`` minimise the convex MBAR objective
    ``sum_n c_n ln sum_k N_k exp(f_k - u_kn) - sum_k N_k f_k`` with ``N_k = sum_{n in k} c_n``;
    the unbiased weight of sample n is ``c_n / sum_k N_k exp(f_k - u_kn)``.  With all counts 1
    this is exactly pymbar's MBAR (checked in :func:`analyse`).
    """

    def __init__(self, phi: np.ndarray, window_of_sample: np.ndarray, theta0: np.ndarray, k: float, kT: float):
        self.phi = phi
        self.window = window_of_sample
        self.n_windows = len(theta0)
        u_kn = bias_reduced(phi, theta0, k, kT)  # 0 <= u <= k / kT: exp(-u) cannot underflow for sane k
        if k / kT > 600:
            raise ValueError("k too large for the exp(-u) matrix")
        self.Q = np.exp(-u_kn)
        del u_kn
        self.positive = (phi > 0) & (phi < np.pi)

    def _sums(self, f: np.ndarray, counts: np.ndarray, N_k: np.ndarray, hessian: bool, chunk: int = 16384):
        """Objective, gradient and (optionally) Hessian of the MBAR objective at ``f``, in column chunks."""
        shift = f[N_k > 0].max()
        a = np.where(N_k > 0, N_k * np.exp(np.minimum(f - shift, 0.0)), 0.0)
        objective = -float(N_k @ f)
        gradient = -N_k.copy()
        H = np.zeros((len(f), len(f))) if hessian else None
        for start in range(0, self.Q.shape[1], chunk):
            c = counts[start: start + chunk]
            Q = self.Q[:, start: start + chunk]
            D = a @ Q
            nonzero = c > 0
            objective += float(np.sum(c[nonzero] * (np.log(D[nonzero]) + shift)))
            if hessian:
                W = Q * (a[:, None] / D)
                cW = W * c
                gradient += cW.sum(axis=1)
                H -= cW @ W.T
        if hessian:
            H += np.diag(gradient + N_k)
        return objective, gradient, H

    def solve(self, counts: np.ndarray, f_init: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 100):
        """Free energies ``f_k`` (kT, f_0 = 0) and unbiased log-weights (normalised; -inf for count 0)."""
        counts = np.asarray(counts, dtype=np.float64)
        N_k = np.bincount(self.window, weights=counts, minlength=self.n_windows)
        f = np.zeros(self.n_windows) if f_init is None else np.array(f_init, dtype=np.float64)
        active = np.flatnonzero(N_k > 0)  # windows without samples (count 0) drop out
        gauge, free = active[0], active[1:]
        f = f - f[gauge]
        for _ in range(max_iter):
            objective, g, H = self._sums(f, counts, N_k, hessian=True)
            step = np.zeros_like(f)
            step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])  # gauge: f of the first active window = 0
            t = 1.0
            while True:  # damped Newton: halve the step until the objective does not increase
                trial = f - t * step
                if self._sums(trial, counts, N_k, hessian=False)[0] <= objective + 1e-13 * abs(objective) or t < 1e-6:
                    break
                t *= 0.5
            f = trial
            if np.max(np.abs(t * step)) < tol:
                break
        else:
            raise RuntimeError("MBAR Newton iteration did not converge")
        f = f - f[0]
        a = np.where(N_k > 0, N_k * np.exp(np.minimum(f - f[active].max(), 0.0)), 0.0)
        used = counts > 0
        log_w = np.full(len(counts), -np.inf)
        log_w[used] = np.log(counts[used]) - np.log(a @ self.Q[:, used])
        log_w -= _logsumexp(log_w[used])
        return f, log_w

    def delta_f(self, log_w: np.ndarray) -> float:
        """F(phi > 0) - F(phi < 0), kT, from unbiased log-weights."""
        return float(_logsumexp(log_w[~self.positive]) - _logsumexp(log_w[self.positive]))

    def profile(self, log_w: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """F (kT) on the bins ``edges`` of phi, minimum 0 (inf for an empty bin)."""
        index = np.clip(np.digitize(self.phi, edges) - 1, 0, len(edges) - 2)
        p = np.bincount(index, weights=np.exp(log_w), minlength=len(edges) - 1)
        with np.errstate(divide="ignore"):
            f = -np.log(p / np.diff(edges))
        return f - np.min(f)


#: Loop-closure check: the phi > 0 and phi < 0 basins are joined by two barriers, near phi = 0 and near
#: phi = 120 deg.  Leaving out the windows on one barrier (theta0 in the range, deg) joins the basins
#: through the other one only; the populations of the left-out barrier regions (F > 10 kT) do not matter.
#: Both estimates must agree unless some window does not sample its slow orthogonal degrees of freedom.
PATHS = {"via_phi_0": (105.0, 145.0), "via_phi_120": (-25.0, 15.0)}


def analyse(series: list[dict], theta0: np.ndarray, k: float, kT: float, *, n_bins: int, n_blocks: int,
            n_bootstrap: int, bootstrap_seed: int, joint_blocks: bool = False, other_blocks=(10, 20),
            n_bootstrap_other: int = 50) -> dict:
    from pymbar import MBAR

    phis = [s["phi"] for s in series]
    lengths = np.array([len(p) for p in phis])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    phi = np.concatenate(phis)
    window = np.repeat(np.arange(len(phis)), lengths)
    n_windows = len(phis)

    # full data with pymbar: dF, the analytic error and the overlap matrix
    t0 = time.time()
    u_kn = bias_reduced(phi, theta0, k, kT)
    mbar = MBAR(u_kn, lengths, verbose=False)
    positive = ((phi > 0) & (phi < np.pi)).astype(np.float64)
    result = mbar.compute_expectations(positive, u_kn=np.zeros(len(phi)))
    p_pos, dp_pos = float(np.ravel(result["mu"])[0]), float(np.ravel(result["sigma"])[0])
    delta_f_pymbar = float(np.log((1 - p_pos) / p_pos))
    analytic_error = dp_pos / (p_pos * (1 - p_pos))
    overlap = np.asarray(mbar.compute_overlap()["matrix"])
    f_pymbar = np.asarray(mbar.f_k)
    del u_kn, mbar
    print(f"pymbar MBAR on {len(phi)} samples: dF = {delta_f_pymbar:.5f} kT (analytic +- {analytic_error:.4f}), "
          f"{time.time() - t0:.1f} s", flush=True)
    neighbour = np.array([min(overlap[i, (i + 1) % n_windows], overlap[(i + 1) % n_windows, i]) for i in range(n_windows)])
    smallest = float(neighbour.min())
    print(f"smallest neighbour overlap {smallest:.4f} (windows {int(np.argmin(neighbour))} and next)", flush=True)

    # the same with the weighted solver (used for the halves and the bootstrap)
    t0 = time.time()
    solver = WeightedMBAR(phi, window, theta0, k, kT)
    f_full, log_w = solver.solve(np.ones(len(phi)), f_init=f_pymbar - f_pymbar[0])
    delta_f = solver.delta_f(log_w)
    if abs(delta_f - delta_f_pymbar) > 1e-4 or np.max(np.abs(f_full - (f_pymbar - f_pymbar[0]))) > 1e-4:
        raise RuntimeError(f"weighted MBAR disagrees with pymbar: {delta_f} vs {delta_f_pymbar}")
    print(f"weighted Newton MBAR: dF = {delta_f:.5f} kT ({time.time() - t0:.1f} s)", flush=True)
    edges = np.linspace(-np.pi, np.pi, n_bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    profile = solver.profile(log_w, edges)

    position = np.arange(len(phi)) - offsets[window]
    first = solver.delta_f(solver.solve((position < lengths[window] // 2).astype(float), f_full)[1])
    second = solver.delta_f(solver.solve((position >= lengths[window] // 2).astype(float), f_full)[1])
    print(f"halves: first {first:.4f} kT, second {second:.4f} kT", flush=True)

    theta0_deg = np.rad2deg(theta0)
    path_masks = {name: np.isin(window, np.flatnonzero(~((theta0_deg > lo) & (theta0_deg < hi))))
                  for name, (lo, hi) in PATHS.items()}
    paths = {name: solver.delta_f(solver.solve(mask.astype(float), f_full)[1]) for name, mask in path_masks.items()}
    print("loop closure: " + ", ".join(f"{name} {value:.4f} kT" for name, value in paths.items()), flush=True)

    if joint_blocks and len(set(lengths)) != 1:
        raise ValueError("joint bootstrap blocks need windows of equal length")

    def bootstrap(blocks: int, n_resamples: int, seed: int, with_paths: bool = False):
        rng = np.random.default_rng(seed)
        values, profiles = np.empty(n_resamples), np.empty((n_resamples, n_bins))
        path_values = {name: np.empty(n_resamples) for name in PATHS}
        for b in range(n_resamples):
            counts = np.zeros(len(phi))
            shared = np.bincount(rng.integers(0, blocks, size=blocks), minlength=blocks)
            for w in range(n_windows):
                size = lengths[w] // blocks
                chosen = shared if joint_blocks else np.bincount(rng.integers(0, blocks, size=blocks), minlength=blocks)
                counts[offsets[w]: offsets[w] + size * blocks] = np.repeat(chosen, size)
            _, lw = solver.solve(counts, f_full)
            values[b] = solver.delta_f(lw)
            profiles[b] = solver.profile(lw, edges)
            if with_paths:
                for name, mask in path_masks.items():
                    path_values[name][b] = solver.delta_f(solver.solve(counts * mask, f_full)[1])
        return values, profiles, path_values

    t0 = time.time()
    boot, boot_profiles, boot_paths = bootstrap(n_blocks, n_bootstrap, bootstrap_seed, with_paths=True)
    path_errors = {name: float(np.std(v, ddof=1)) for name, v in boot_paths.items()}
    names = list(PATHS)
    closure = paths[names[0]] - paths[names[1]]
    closure_error = float(np.std(boot_paths[names[0]] - boot_paths[names[1]], ddof=1))
    print("loop closure: " + ", ".join(f"{n} {paths[n]:.3f} +- {path_errors[n]:.3f}" for n in names)
          + f"; difference {closure:.3f} +- {closure_error:.3f} kT", flush=True)
    with np.errstate(invalid="ignore"):
        profile_error = np.where(np.isfinite(boot_profiles).all(axis=0), np.std(boot_profiles, axis=0, ddof=1), np.nan)
    error = float(np.std(boot, ddof=1))
    print(f"block bootstrap ({n_blocks} blocks/window, {n_bootstrap} resamples): +- {error:.4f} kT "
          f"({time.time() - t0:.0f} s)", flush=True)
    other = {}
    for i, blocks in enumerate(other_blocks):
        values, _, _ = bootstrap(blocks, n_bootstrap_other, bootstrap_seed + 1 + i)
        other[str(blocks)] = float(np.std(values, ddof=1))
        print(f"  with {blocks} blocks/window ({n_bootstrap_other} resamples): +- {other[str(blocks)]:.4f} kT", flush=True)

    # per-window diagnostics: where phi sits, and how often psi changes between the "alpha" range
    # (-120, 0) deg and the rest (C7eq / beta for phi < 0, alpha_L for phi > 0): a check for a hidden slow psi
    windows = []
    for s, t in zip(series, theta0):
        mean_offset = float(np.angle(np.mean(np.exp(1j * (s["phi"] - t)))))
        alpha = (s["psi"] > np.deg2rad(-120.0)) & (s["psi"] < 0.0)
        windows.append(dict(theta0_deg=round(float(np.rad2deg(t)), 3),
                            mean_phi_offset_deg=round(float(np.rad2deg(mean_offset)), 3),
                            std_phi_deg=round(float(np.rad2deg(np.std(wrap(s["phi"] - t)))), 3),
                            psi_alpha_fraction=round(float(np.mean(alpha)), 4),
                            psi_alpha_changes=int(np.count_nonzero(np.diff(alpha.astype(np.int8))))))
    return dict(
        dF_kT=delta_f, dF_error_kT=error, dF_first_half=first, dF_second_half=second,
        dF_mbar_analytic_error_kT=analytic_error, p_phi_positive=p_pos,
        bootstrap_error_by_blocks_per_window={str(n_blocks): error, **other},
        bootstrap_blocks="the same time blocks for all windows (joint)" if joint_blocks else "each window separately",
        loop_closure=dict(dF_kT={n: round(paths[n], 4) for n in names},
                          dF_error_kT={n: round(path_errors[n], 4) for n in names},
                          difference_kT=round(closure, 4), difference_error_kT=round(closure_error, 4),
                          left_out_theta0_deg={n: list(PATHS[n]) for n in names},
                          note="dF joining the basins through one barrier only (windows with theta0 inside the "
                               "left-out range dropped); must agree within errors if every window is ergodic"),
        bootstrap_mean_kT=float(np.mean(boot)),
        smallest_neighbour_overlap=smallest,
        neighbour_overlap=[round(float(x), 4) for x in neighbour],
        neighbour_overlap_note="min(O[i, i+1], O[i+1, i]) of the MBAR overlap matrix, window i and the next (ring)",
        profile=dict(phi_rad=[round(float(x), 5) for x in centres], F_kT=[round(float(x), 4) for x in profile],
                     F_error_kT=[round(float(x), 4) for x in profile_error],
                     note=f"{n_bins} bins of phi over (-pi, pi], F = -ln(p / bin width) shifted to min 0; errors: "
                          f"block bootstrap as for dF"),
        f_k_windows_kT=[round(float(x), 4) for x in f_full],
        windows=windows,
    )


# --- driver ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the per-window time series and summary.json")
    parser.add_argument("--json", type=Path, help="also write the summary here (e.g. data/ala2-vacuum-umbrella-reference.json)")
    parser.add_argument("--n-windows", type=int, default=36)
    parser.add_argument("--k", type=float, default=500.0, help="bias force constant, kJ/mol: E = 0.5 k (1 - cos(phi - theta0))")
    parser.add_argument("--steps-per-window", type=int, default=1_000_000, help="production MD steps per window")
    parser.add_argument("--record-every", type=int, default=100, help="steps between recorded samples")
    parser.add_argument("--timestep", type=float, default=0.001, help="ps")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--hydrogen-mass", type=float, help="Da; repartition hydrogen masses (default: true masses)")
    parser.add_argument("--pull-ps", type=float, default=10.0, help="restrained pull to theta0, discarded")
    parser.add_argument("--equilibration-ps", type=float, default=20.0, help="equilibration in the window, discarded")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes for independent windows")
    parser.add_argument("--replica-exchange", action="store_true",
                        help="Hamiltonian replica exchange between neighbouring windows every --record-every steps "
                             "(one process, all windows); bootstrap blocks are then the same for all windows")
    parser.add_argument("--n-bins", type=int, default=72, help="bins of the phi profile")
    parser.add_argument("--n-blocks", type=int, default=5, help="bootstrap blocks per window")
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("OPENMM_CPU_THREADS", "1")
    import openmm

    args.out.mkdir(parents=True, exist_ok=True)
    theta0 = wrap(np.deg2rad(-180.0 + 360.0 * np.arange(args.n_windows) / args.n_windows))
    theta0[np.isclose(theta0, np.pi)] = -np.pi  # keep the first centre at -180 deg
    pull_steps = int(round(args.pull_ps / args.timestep))
    equilibration_steps = int(round(args.equilibration_ps / args.timestep))
    tasks = [dict(out=str(args.out), window=w, theta0=float(theta0[w]), k=args.k, steps=args.steps_per_window,
                  record_every=args.record_every, timestep=args.timestep, friction=args.friction,
                  temperature=args.temperature, seed=args.seed, hydrogen_mass=args.hydrogen_mass,
                  pull_steps=pull_steps, equilibration_steps=equilibration_steps,
                  replica_exchange=bool(args.replica_exchange)) for w in range(args.n_windows)]
    mode = "replica exchange, 1 process" if args.replica_exchange else f"independent windows, {args.workers} workers"
    print(f"{args.n_windows} windows, k = {args.k} kJ/mol, {args.steps_per_window} steps/window at {args.timestep} ps, "
          f"hydrogen mass {args.hydrogen_mass or 'true'}, {mode} -> {args.out}", flush=True)

    t_start = time.time()
    ran = not all(_reusable(t) for t in tasks)
    exchange = None
    if args.replica_exchange:
        exchange = run_replica_exchange(tasks)
        if exchange.get("reused"):
            exchange = json.loads((args.out / "exchange.json").read_text())
    else:
        results = []
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for r in pool.imap_unordered(run_window, tasks):
                results.append(r)
                rate = f", {r['steps_per_s']:.0f} steps/s" if "steps_per_s" in r else " (reused)"
                print(f"  window {r['window']:2d} done in {r['wall_s']:.0f} s{rate}; {len(results)}/{len(tasks)} "
                      f"after {time.time() - t_start:.0f} s", flush=True)
    md_wall_s = time.time() - t_start
    md_wall_file = args.out / "md_wall_time.json"
    if ran or not md_wall_file.exists():
        md_wall_file.write_text(json.dumps({"md_wall_time_s": md_wall_s}) + "\n")
    else:  # MD reused from an earlier run of the same settings: report that run's wall time
        md_wall_s = json.loads(md_wall_file.read_text())["md_wall_time_s"]

    series, md_steps, window_wall = [], 0, 0.0
    for w in range(args.n_windows):
        with np.load(args.out / f"window_{w:02d}.npz", allow_pickle=False) as f:
            series.append(dict(phi=np.array(f["phi"]), psi=np.array(f["psi"])))
            md_steps += int(f["md_steps"])
            window_wall += float(f["wall_s"])
    kT = MOLAR_GAS_CONSTANT * args.temperature
    t_analysis = time.time()
    result = analyse(series, theta0, args.k, kT, n_bins=args.n_bins, n_blocks=args.n_blocks,
                     n_bootstrap=args.n_bootstrap, bootstrap_seed=args.bootstrap_seed,
                     joint_blocks=bool(args.replica_exchange))
    analysis_s = time.time() - t_analysis

    import pymbar

    summary = dict(
        system="ala2-vacuum",
        definition="dF = F(phi > 0) - F(phi < 0) = -ln(P(0 < phi < pi) / P(-pi < phi <= 0)), unbiased, kT",
        **{k: result.pop(k) for k in ("dF_kT", "dF_error_kT", "dF_first_half", "dF_second_half",
                                      "dF_mbar_analytic_error_kT")},
        dF_error_note=f"dF_error_kT: std over {args.n_bootstrap} block-bootstrap resamples ({args.n_blocks} blocks per "
                      "window; " + ("the same blocks for all windows, as replica exchange correlates them" if
                                    args.replica_exchange else "resampled within each window")
                      + "); halves: every window's first / second half alone; "
                      "the MBAR analytic error treats every recorded sample as independent",
        method=(f"umbrella sampling along phi (C-N-CA-C) with {args.n_windows} periodic harmonic-cosine biases "
                f"0.5*k*(1-cos(phi-theta0)) (OpenMM CustomTorsionForce), theta0 every {360 / args.n_windows:g} deg; "
                f"each window started from the bundled structure nearest in phi, minimised, pulled to theta0 "
                f"({args.pull_ps:g} ps, k >= 1000 kJ/mol) and equilibrated ({args.equilibration_ps:g} ps), both discarded; "
                + (f"Hamiltonian replica exchange between neighbouring windows (ring) every {args.record_every} steps, "
                   "equilibration included; " if args.replica_exchange else "windows independent; ")
                + 
                f"LangevinMiddleIntegrator, Reference platform; MBAR (pymbar {pymbar.__version__}) on the bias energies"),
        n_windows=args.n_windows, k=args.k, k_units="kJ/mol", theta0_deg=[round(float(x), 3) for x in np.rad2deg(theta0)],
        steps_per_window=args.steps_per_window, record_every_steps=args.record_every,
        samples_per_window=args.steps_per_window // args.record_every,
        pull_ps=args.pull_ps, equilibration_ps=args.equilibration_ps,
        timestep_ps=args.timestep, friction=args.friction, friction_units="1/ps", temperature_K=args.temperature,
        hydrogen_mass=args.hydrogen_mass if args.hydrogen_mass is not None else "true masses (no repartitioning)",
        constraints="none", platform="Reference", seed=args.seed, bootstrap_seed=args.bootstrap_seed,
        n_bootstrap=args.n_bootstrap, blocks_per_window=args.n_blocks,
        total_md_steps=md_steps, total_md_steps_note="pull + equilibration + production, all windows",
        wall_time_s=round(md_wall_s + analysis_s, 1), md_wall_time_s=round(md_wall_s, 1),
        analysis_wall_time_s=round(analysis_s, 1), window_cpu_wall_s_sum=round(window_wall, 1),
        workers=1 if args.replica_exchange else args.workers, replica_exchange=bool(args.replica_exchange),
        **({"exchange": exchange} if exchange is not None else {}),
        openmm_version=openmm.__version__, pymbar_version=pymbar.__version__,
        **result,
        raw_data=str(args.out),
    )
    text = json.dumps(summary, indent=1)
    (args.out / "summary.json").write_text(text + "\n")
    if args.json is not None:
        args.json.write_text(text + "\n")
        print(f"wrote {args.json} ({len(text) + 1} bytes)")
    print(f"dF = {summary['dF_kT']:.3f} +- {summary['dF_error_kT']:.3f} kT (block bootstrap); halves "
          f"{summary['dF_first_half']:.3f} / {summary['dF_second_half']:.3f}; MBAR analytic +- "
          f"{summary['dF_mbar_analytic_error_kT']:.3f}; smallest neighbour overlap {summary['smallest_neighbour_overlap']:.3f}; "
          f"{md_steps:,} MD steps; wall {summary['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
