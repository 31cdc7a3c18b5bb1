"""Cross-check a trained ala2-vacuum generator against the parallel-tempering reference.

Two comparisons, printed as tables:

1. **dF at every tempering temperature.**  The generator's samples (a folder written by
   ``openmm-bg demo`` or ``openmm-bg sample``) are reweighted to each temperature T of the
   tempering run, ``log w_T = -(T0 / T) u - log q`` (``u`` is the reduced energy at T0), and
   ``dF(T) = F(phi > 0) - F(phi < 0)`` (bootstrap error) is set beside the direct count of
   the tempering replica at T (``data/ala2-vacuum-pt.npz``, per repeat and pooled).
2. **Tempering configurations scored by the generator.**  The 300 K configurations of the
   raw tempering runs (``runs/issue5/ala2-vacuum-pt/repeat*.nc``, not shipped: see the recipe
   in data/README.md) are Boltzmann samples.  For each state, their log weights
   ``-u - log q`` are compared with the generator's own: the fraction of the state's
   Boltzmann mass above quantiles of the generator's log weights, counted on the tempering
   samples and estimated by reweighting the generator's samples.  Where the count exceeds
   the estimate, the generator under-samples configurations of high weight, and its
   reweighted free energy of that state is too high.
3. **BAR per state, generator against tempering configurations.**  For each state S,
   :func:`openmm_bg.analysis.free_energy.bar` between the generator restricted to S (normalisation
   Q_S, the fraction of its samples in S) and the Boltzmann distribution restricted to S
   (the tempering's 300 K configurations in S) gives ``ln Z_S``; then
   ``dF = ln Z_A - ln Z_B``.  It uses the tempering run's configurations within each state but
   not its populations of the states, so it tests the reweighted estimate's tails without
   assuming the tempering's dF.

    python scripts/ala2_cross_check.py openmm-bg-demo --pt-runs runs/issue5/ala2-vacuum-pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def delta_f(log_w: np.ndarray, in_b: np.ndarray, n_bootstrap: int = 100, seed: int = 0) -> tuple[float, float]:
    ok = np.isfinite(log_w)
    w = np.where(ok, np.exp(log_w - log_w[ok].max()), 0.0)
    value = -np.log(w[in_b].sum() / w[~in_b].sum())
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        i = rng.integers(0, len(w), len(w))
        boot.append(-np.log(w[i][in_b[i]].sum() / w[i][~in_b[i]].sum()))
    return float(value), float(np.std(boot))


def tempering_configurations(folder: Path, discard: int, every: int) -> np.ndarray:
    import netCDF4

    frames = []
    for storage in sorted(folder.glob("repeat*.nc")):
        if storage.stem.endswith("_checkpoint"):
            continue
        with netCDF4.Dataset(str(storage)) as main, netCDF4.Dataset(str(storage.with_name(storage.stem + "_checkpoint.nc"))) as checkpoint:
            states = np.asarray(main.variables["states"][:])
            positions = checkpoint.variables["positions"]
            n = min(states.shape[0], positions.shape[0])
            replica = np.argmax(states[:n] == 0, axis=1)  # the replica at the lowest temperature
            frames.append(np.stack([np.asarray(positions[i, replica[i]]) for i in range(discard, n, every)]))
    if not frames:
        raise OSError(f"no repeat*.nc in {folder}")
    return np.concatenate(frames).astype(np.float64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="folder with generator.pt and samples.{npz,dcd,pdb} (openmm-bg demo output)")
    parser.add_argument("--pt-runs", type=Path, default=None, help="folder of the raw tempering runs, for part 2")
    parser.add_argument("--discard", type=int, default=500, help="tempering iterations dropped from each repeat")
    parser.add_argument("--every", type=int, default=2, help="use every n-th tempering iteration in part 2")
    args = parser.parse_args(argv)

    import mdtraj as md
    import torch

    from openmm_bg.sampling.samples import load_checkpoint, load_samples
    from openmm_bg.reference import DATA_DIR

    torch.set_num_threads(1)
    samples, topology = load_samples(args.samples)
    x = np.asarray(samples.positions)
    phi = md.compute_phi(md.Trajectory(x.astype(np.float32), topology))[1][:, 0]
    in_b = phi > 0
    pt = np.load(Path(DATA_DIR) / "ala2-vacuum-pt.npz")
    t0 = float(samples.temperature_K)
    print(f"1. dF = F(phi > 0) - F(phi < 0), kT: {len(x)} generator samples reweighted from {t0:g} K, against the tempering replicas")
    print(f"{'T (K)':>8s} {'generator':>17s} {'ESS %':>7s} {'tempering':>10s}  tempering repeats")
    for k, temperature in enumerate(pt["temperatures"]):
        log_w = -(t0 / temperature) * samples.energy - samples.log_prob
        value, error = delta_f(log_w, in_b)
        ok = np.isfinite(log_w)
        w = np.exp(log_w[ok] - log_w[ok].max())
        ess = w.sum() ** 2 / (w**2).sum() / len(log_w)
        p = (pt["phi"][:, args.discard:, k] > 0).mean(axis=1)
        pooled = p.mean()
        print(f"{temperature:8.1f} {value:8.3f} +- {error:5.3f} {100 * ess:7.2f} {-np.log(pooled / (1 - pooled)):10.3f}  "
              + " ".join(f"{-np.log(q / (1 - q)):.3f}" for q in p))

    if args.pt_runs is None:
        return
    generator, molecule, _, _ = load_checkpoint(args.samples / "generator.pt")
    configurations = tempering_configurations(args.pt_runs, args.discard, args.every)
    phi_pt = molecule.collective_variables["phi"](configurations)
    with torch.no_grad():
        chunks = [torch.as_tensor(configurations[i:i + 5000]) for i in range(0, len(configurations), 5000)]
        log_q = np.concatenate([generator.log_prob(c).numpy() for c in chunks])
        u = np.concatenate([generator.energy(c).numpy() for c in chunks])
    log_w_pt = -u - log_q
    print(f"\n2. {len(configurations)} tempering configurations at {t0:g} K scored by the generator (log w = -u - log q)")
    print(f"{'state':>6s} {'quantile':>9s} {'log w above':>12s} {'Boltzmann mass: tempering':>27s} {'reweighted generator':>21s}")
    for name, state_pt, state_g in (("phi<0", phi_pt < 0, ~in_b), ("phi>0", phi_pt > 0, in_b)):
        mine = samples.log_weight[state_g & np.isfinite(samples.log_weight)]
        w = np.exp(mine - mine.max())
        for quantile in (50, 90, 99, 99.9):
            threshold = np.percentile(mine, quantile)
            print(f"{name:>6s} {quantile:8.1f}% {threshold:12.2f} {np.mean(log_w_pt[state_pt] > threshold):27.3f} "
                  f"{w[mine > threshold].sum() / w.sum():21.3f}")
        print(f"{name:>6s}   ({int(state_pt.sum())} tempering configurations; largest log w: tempering {log_w_pt[state_pt].max():.2f}, generator {mine.max():.2f})")

    from openmm_bg.analysis.free_energy import bar

    finite = np.isfinite(samples.log_weight)
    print("\n3. ln Z of each state: BAR (generator samples in S vs tempering configurations in S) and reweighting alone")
    log_z = {}
    for name, state_pt, state_g in (("phi<0", phi_pt < 0, ~in_b), ("phi>0", phi_pt > 0, in_b)):
        mine = state_g & finite
        q_s = mine.sum() / finite.sum()
        # works from q|S to p|S: u + log q = -log w; back: log w
        estimate = bar(-samples.log_weight[mine], log_w_pt[state_pt], n_bootstrap=100, seed=0)
        log_z[name] = (np.log(q_s) - estimate.value, estimate.error)
        top = samples.log_weight[finite].max()
        reweighted = np.log(np.sum(np.exp(samples.log_weight[mine] - top)) / finite.sum()) + top
        print(f"{name:>6s}  Q_S {q_s:.4f}  BAR ln Z_S {log_z[name][0]:.4f} +- {log_z[name][1]:.4f}  reweighting ln Z_S {reweighted:.4f}")
    value = log_z["phi<0"][0] - log_z["phi>0"][0]
    error = float(np.hypot(log_z["phi<0"][1], log_z["phi>0"][1]))
    print(f"dF = F(phi > 0) - F(phi < 0) by BAR: {value:.3f} +- {error:.3f} kT (bootstrap; tempering frames are correlated, so the error is a lower bound)")


if __name__ == "__main__":
    main()
