"""Trajectory I/O, MD and parallel tempering, reference estimators, bundled data and its provenance."""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from math import erf, sqrt

import mdtraj as md
import numpy as np
import pytest

from openmm_bg.commands import simulate
from openmm_bg.molecules import load_bundled_trajectory
from openmm_bg.reference import load_reference, load_tempering_samples
from openmm_bg.molecules.trajectories import load_mdtraj, load_trajectory, save_trajectory
from openmm_bg.simulation.tempering import read_parallel_tempering, run_parallel_tempering
from openmm_bg.simulation.langevin import repartition_hydrogen_mass
from openmm_bg.simulation.dynamics import run_md
from openmm_bg.reference.estimates import block_average, mbar_log_populations, tempering_free_energy_difference
from openmm_bg.units import MOLAR_GAS_CONSTANT
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference import DATA_DIR

from helpers import NSIGMA as NSIGMA_CUTOFF  # the shared sigma cut of the statistical tests


@pytest.fixture(scope="module")
def ala2():
    return get_system("ala2-vacuum")


@pytest.fixture(scope="module")
def frames(ala2):
    rng = np.random.default_rng(7)
    return ala2.positions[None] + rng.normal(scale=0.02, size=(25, ala2.n_atoms, 3))


# --- trajectory round trip and mismatches ----------------------------------------------------


@pytest.mark.parametrize("suffix, atol", [(".dcd", 2e-6), (".xtc", 5.01e-4), (".pdb", 5.01e-5)])
def test_trajectory_round_trip_to_file_precision(tmp_path, ala2, frames, suffix, atol):
    # DCD: float32 Angstrom (~1e-7 relative); XTC: rounded to 1e-3 nm; PDB: 1e-3 Angstrom.
    path = save_trajectory(tmp_path / f"t{suffix}", frames, ala2.topology)
    back = load_trajectory(path, ala2.topology)
    assert back.shape == frames.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, frames, atol=atol, rtol=0)
    if suffix == ".xtc":
        assert np.abs(back - frames).max() > 1e-5  # the tolerance is the format's, not slack


def test_mismatched_atom_count_raises(tmp_path, ala2, frames):
    path = save_trajectory(tmp_path / "t.dcd", frames, ala2.topology)
    other = ala2.topology.copy()
    other.add_atom("X", md.element.argon, other.add_residue("XXX", other.add_chain()))
    with pytest.raises(ValueError, match="trajectory t.dcd with 22 atoms vs topology with 23 atoms"):
        load_trajectory(path, other)
    trimmed = save_trajectory(tmp_path / "t21.xtc", frames[:, :21], ala2.topology.subset(range(21)))
    with pytest.raises(ValueError, match="21 atoms vs topology with 22 atoms"):
        load_trajectory(trimmed, ala2.topology)


def _reordered(topology: md.Topology, order: np.ndarray) -> md.Topology:
    """The same atoms in another order (mdtraj's subset would sort the indices)."""
    new = md.Topology()
    chain = new.add_chain()
    residues = {}
    for index in order:
        atom = topology.atom(int(index))
        if atom.residue.index not in residues:
            residues[atom.residue.index] = new.add_residue(atom.residue.name, chain, atom.residue.resSeq)
        new.add_atom(atom.name, atom.element, residues[atom.residue.index])
    return new


def test_atoms_in_a_different_order_raise(tmp_path, ala2, frames):
    order = np.arange(ala2.n_atoms)
    order[[4, 5]] = order[[5, 4]]
    swapped_topology = _reordered(ala2.topology, order)
    pdb = save_trajectory(tmp_path / "swapped.pdb", frames[:3, order], swapped_topology)
    with pytest.raises(ValueError, match="atom names in a different order: atom 4 is"):
        load_trajectory(pdb, ala2.topology)
    dcd = save_trajectory(tmp_path / "swapped.dcd", frames[:, order], swapped_topology)
    with pytest.raises(ValueError, match="different order"):
        load_trajectory(dcd, ala2.topology, trajectory_topology=pdb)
    assert load_trajectory(dcd, swapped_topology, trajectory_topology=pdb).shape == frames.shape
    with pytest.raises(OSError, match="does not exist"):
        load_trajectory(tmp_path / "none.dcd", ala2.topology)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        load_trajectory(dcd, swapped_topology, stride=0)


# --- MD and parallel tempering ---------------------------------------------------------------


def test_md_is_seeded_and_resumes(tmp_path, ala2):
    kwargs = dict(steps_per_frame=50, timestep=0.001, checkpoint_every=10, progress=False)
    a = run_md(ala2.system, ala2.topology, ala2.positions, tmp_path / "a.dcd", 20, seed=5, **kwargs)
    b = run_md(ala2.system, ala2.topology, ala2.positions, tmp_path / "b.dcd", 20, seed=5, **kwargs)
    c = run_md(ala2.system, ala2.topology, ala2.positions, tmp_path / "c.dcd", 20, seed=6, **kwargs)
    xa, xb, xc = (load_trajectory(p, ala2.topology, trajectory_topology=p.with_suffix(".pdb")) for p in (a, b, c))
    np.testing.assert_array_equal(xa, xb)
    assert np.abs(xa - xc).max() > 1e-3
    with pytest.raises(FileExistsError):
        run_md(ala2.system, ala2.topology, ala2.positions, a, 30, resume=False, **kwargs)
    run_md(ala2.system, ala2.topology, ala2.positions, a, 30, seed=5, **kwargs)
    xr = load_trajectory(a, ala2.topology)
    assert xr.shape == (30, 22, 3)
    np.testing.assert_array_equal(xr[:20], xa)
    # The continuation starts where the checkpoint left off: one frame step, not a jump.
    step = np.abs(np.diff(xr, axis=0)).max(axis=(1, 2))
    assert step[19] < 2 * step[:19].max()


def test_parallel_tempering_runs_resumes_and_stores_consistent_energies(tmp_path, ala2):
    system = repartition_hydrogen_mass(ala2.system, ala2.openmm_topology, 4.0)
    temperatures = [300.0, 400.0, 530.0]
    storage = tmp_path / "pt.nc"
    run_parallel_tempering(system, ala2.positions, temperatures, storage, 15, steps_per_iteration=50, progress=False, seed=3)
    run_parallel_tempering(system, ala2.positions, temperatures, storage, 25, steps_per_iteration=50, progress=False, seed=3)
    with pytest.raises(ValueError, match="was run at"):
        run_parallel_tempering(system, ala2.positions, [300.0, 500.0, 900.0], storage, 30, progress=False)
    data = read_parallel_tempering(storage)
    assert data.n_iterations == 26 and data.steps_per_iteration == 50
    np.testing.assert_allclose(data.temperatures, temperatures)
    assert all(sorted(row) == [0, 1, 2] for row in data.replica_states)
    assert (data.replica_states[1:] != data.replica_states[:-1]).any()  # some swaps were accepted
    # u[i, r, k] * kT_k is the replica's potential energy, whatever k
    energy = data.reduced_potentials * (MOLAR_GAS_CONSTANT * data.temperatures)
    np.testing.assert_allclose(energy, energy[:, :, :1].repeat(3, axis=2), rtol=1e-9, atol=1e-9)
    # and it is the energy of the stored positions, recomputed independently (float32 positions)
    own = np.take_along_axis(data.reduced_potentials, data.replica_states[:, :, None], axis=2)[:, :, 0]
    by_state = data.by_state(own)
    xyz = data.by_state(data.positions)
    np.testing.assert_allclose(ala2.reduced_potential(xyz[:, 0]), by_state[:, 0], atol=1e-3)  # state 0 is 300 K


# --- estimators against analytic references --------------------------------------------------


def test_mbar_populations_match_harmonic_oscillator():
    # x ~ N(0, T_k / K) at three temperatures; P(x > a) at T_0 is analytic.
    rng = np.random.default_rng(11)
    temperatures, K, a, n = np.array([1.0, 2.0, 4.0]), 1.0, 1.5, 20000
    x = np.concatenate([rng.normal(scale=np.sqrt(t / K), size=n) for t in temperatures])
    u_kn = 0.5 * K * x[None] ** 2 / temperatures[:, None]
    log_p, f_k = mbar_log_populations(u_kn, np.full(3, n), np.stack([x <= a, x > a]), target_state=0)
    p_exact = 0.5 * (1 - erf(a / sqrt(2 * temperatures[0] / K)))
    # f_k = -ln Z_k + ln Z_0 = -0.5 ln(T_k / T_0), exact for the Gaussian
    np.testing.assert_allclose(f_k, -0.5 * np.log(temperatures / temperatures[0]), atol=0.03)
    # binomial error of the state-0 samples alone bounds the MBAR error from above
    sigma = sqrt(p_exact * (1 - p_exact) / n)
    assert abs(np.exp(log_p[1]) - p_exact) < NSIGMA_CUTOFF * sigma
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-12)


def test_tempering_free_energy_bootstrap_matches_spread_of_repeats():
    # Independent toy "repeats" of correlated data: a two-state chain at three temperatures.
    rng = np.random.default_rng(5)
    temperatures = np.array([1.0, 1.5, 2.25])
    gap = 2.0  # energy of state B above A: dF(T0) = gap / T0 exactly

    def repeat(n=2000, stay=0.9):
        occupancy = np.empty((n, 3), dtype=bool)
        p_b = np.exp(-gap / temperatures) / (1 + np.exp(-gap / temperatures))
        state = rng.random(3) < p_b
        for i in range(n):
            # a lazy chain with the right stationary law: refresh with probability 1 - stay
            refresh = rng.random(3) > stay
            state = np.where(refresh, rng.random(3) < p_b, state)
            occupancy[i] = state
        energy = gap * occupancy
        return energy[:, :, None] / temperatures[None, None, :], ~occupancy, occupancy

    runs = [repeat() for _ in range(4)]
    result = tempering_free_energy_difference(
        [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs], block_length=100, n_bootstrap=40, seed=1
    )
    assert abs(result.delta_f - gap) < NSIGMA_CUTOFF * result.error
    assert 0.3 < result.bootstrap_error / result.repeat_error < 3.0
    with pytest.raises(ValueError, match="fewer than two blocks"):
        tempering_free_energy_difference([runs[0][0][:150]], [runs[0][1][:150]], [runs[0][2][:150]], block_length=100)


def test_block_average_of_independent_samples():
    rng = np.random.default_rng(2)
    values = rng.normal(size=20000)
    mean, error = block_average(values, n_blocks=20)
    assert error == pytest.approx(1 / np.sqrt(20000), rel=0.5)
    assert abs(mean) < NSIGMA_CUTOFF * error


# --- command line ----------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser()
    simulate.configure(parser)
    return parser.parse_args(argv)


def test_simulate_command_md_and_tempering(tmp_path, ala2, capsys):
    out = tmp_path / "md.xtc"
    assert simulate.run(_parse(["ala2-vacuum", "-o", str(out), "--frames", "5", "--steps-per-frame", "20", "--no-progress"])) == 0
    assert load_trajectory(out, ala2.topology, trajectory_topology=out.with_suffix(".pdb")).shape == (5, 22, 3)
    pt = tmp_path / "pt.dcd"
    argv = ["ala2-vacuum", "-o", str(pt), "--frames", "4", "--steps-per-frame", "20", "--temperatures", "300", "450",
            "--hydrogen-mass", "3", "--timestep", "0.002", "--no-progress"]
    capsys.readouterr()
    assert simulate.run(_parse(argv)) == 0
    assert load_trajectory(pt, ala2.topology).shape == (5, 22, 3)
    assert "caution: parallel tempering with 2 fs steps" in capsys.readouterr().err  # the measured 2 fs bias
    pt1 = tmp_path / "pt1.dcd"
    assert simulate.run(_parse(["ala2-vacuum", "-o", str(pt1), "--frames", "2", "--steps-per-frame", "10",
                                "--temperatures", "300", "450", "--no-progress"])) == 0
    assert "caution" not in capsys.readouterr().err
    from openmm import unit
    from openmmtools.multistate import MultiStateReporter

    reporter = MultiStateReporter(str(pt1.with_suffix(".nc")), open_mode="r")
    try:
        moves = reporter.read_mcmc_moves()
    finally:
        reporter.close()
    # replicas redraw velocities every iteration: the tempering default friction is 10/ps (SeededLangevinMove)
    assert {m.collision_rate.value_in_unit(unit.picosecond**-1) for m in moves} == {10.0}
    with pytest.raises(ValueError, match="must end in .dcd or .xtc, got md.nc"):
        simulate.run(_parse(["ala2-vacuum", "-o", str(tmp_path / "md.nc")]))
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        simulate.run(_parse(["nope", "-o", str(out)]))
    from openmm_bg.molecules.systems import TRPZIP2_PDB

    own = tmp_path / "own.dcd"
    argv = ["-o", str(own), "--structure", str(TRPZIP2_PDB), "--forcefield", "amber14-all.xml", "implicit/gbn2.xml",
            "--frames", "2", "--steps-per-frame", "5", "--platform", "CPU", "--no-progress"]
    assert simulate.run(_parse(argv)) == 0
    assert load_trajectory(own, TRPZIP2_PDB, trajectory_topology=own.with_suffix(".pdb")).shape == (2, 218, 3)
    with pytest.raises(ValueError, match="either a ready-made SYSTEM or --structure"):
        simulate.run(_parse(["ala2-vacuum", *argv]))


def test_simulate_command_starts_from_a_given_structure(tmp_path, ala2):
    start = DATA_DIR / "ala2-vacuum-c7ax-start.pdb"
    out = tmp_path / "c7ax.dcd"
    argv = ["ala2-vacuum", "--start", str(start), "-o", str(out), "--frames", "3", "--steps-per-frame", "10", "--no-progress"]
    assert simulate.run(_parse(argv)) == 0
    traj = load_mdtraj(out, ala2.topology)
    phi_start = md.compute_phi(md.load(start))[1][0, 0]
    phi = md.compute_phi(traj)[1][:, 0]
    assert phi_start > 0.5 and np.all(np.abs(phi - phi_start) < 0.5), (phi_start, phi)
    with pytest.raises(ValueError, match="22"):
        simulate.run(_parse(["ala2-vacuum", "--start", str(DATA_DIR / "trpzip2-implicit.pdb"), "-o", str(out)]))
    with pytest.raises(FileNotFoundError, match="--start file not found"):
        simulate.run(_parse(["ala2-vacuum", "--start", str(tmp_path / "none.pdb"), "-o", str(out)]))


def test_simulate_command_as_a_process(tmp_path):
    out = tmp_path / "dimer.dcd"
    done = subprocess.run(
        [sys.executable, "-m", "openmm_bg.commands.simulate", "dimer-wca", "-o", str(out), "--frames", "3",
         "--steps-per-frame", "10", "--timestep", "0.005", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout
    assert load_trajectory(out, get_system("dimer-wca").topology).shape == (3, 216, 3)


# --- bundled data ----------------------------------------------------------------------------


def _provenance() -> dict[str, dict[str, str]]:
    """Parse data/README.md: one '### `file`' heading per file, then '- key: value' lines."""
    entries: dict[str, dict[str, str]] = {}
    current = None
    for line in (DATA_DIR / "README.md").read_text().splitlines():
        heading = re.match(r"^### `([^`]+)`", line)
        if heading:
            current = entries.setdefault(heading.group(1), {})
            continue
        field = re.match(r"^- (\w+): (.*)$", line)
        if current is not None and field:
            current[field.group(1)] = field.group(2).strip().strip("`")
    return entries


def test_provenance_lists_every_file_with_checksums():
    entries = _provenance()
    shipped = {p.name for p in DATA_DIR.iterdir() if p.is_file() and p.name != "README.md"}
    assert shipped == set(entries), f"unlisted: {shipped - set(entries)}, missing: {set(entries) - shipped}"
    total = 0
    for name, entry in entries.items():
        assert {"command", "seed", "platform", "sha256"} <= set(entry), (name, entry)
        content = (DATA_DIR / name).read_bytes()
        total += len(content)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], name
    assert total < 72 * 2**20  # the repository ships its data: keep it small


def test_bundled_training_trajectory(ala2):
    xyz = load_bundled_trajectory("ala2-vacuum")
    assert xyz.shape[0] >= 10000 and xyz.shape[1:] == (22, 3) and xyz.dtype == np.float32
    assert np.isfinite(ala2.reduced_potential(xyz[::1000])).all()
    dimer = get_system("dimer-wca")
    closed = dimer.states["closed"](load_bundled_trajectory("dimer-wca"))
    assert len(closed) == 1000 and closed.all()


def test_reference_is_reproduced_from_bundled_samples():
    reference = load_reference("ala2-vacuum")
    samples = load_tempering_samples("ala2-vacuum")
    kept = slice(reference["discarded_iterations_per_repeat"], None, reference["thin"])
    energy, phi, temperatures = samples["potential_energy"], samples["phi"], samples["temperatures"]
    energy_n = np.concatenate([energy[r, kept] for r in range(len(energy))])  # (n, state sampled)
    n = len(energy_n)
    u_kn = energy_n.T.reshape(-1)[None] / (MOLAR_GAS_CONSTANT * temperatures)[:, None]
    phi_n = np.concatenate([phi[r, kept] for r in range(len(phi))]).T.reshape(-1)
    log_p, _ = mbar_log_populations(u_kn, np.full(len(temperatures), n), np.stack([phi_n < 0, phi_n > 0]))
    assert log_p[0] - log_p[1] == pytest.approx(reference["delta_f_kT"], abs=1e-6)
    assert reference["temperature_K"] == 300.0 and temperatures[0] == 300.0


def test_reference_error_meets_the_target():
    """Issue 5 asks for an ala2-vacuum reference with an error of at most 0.1 kT."""
    reference = load_reference("ala2-vacuum")
    assert reference["error_kT"] >= reference["bootstrap_error_kT"]
    assert reference["error_kT"] >= reference["repeat_standard_error_kT"]
    assert reference["error_kT"] <= 0.1, f"reference error {reference['error_kT']:.3f} kT"


def test_tempering_populations_agree_with_plain_md(ala2):
    """300 K replica of parallel tempering vs plain MD, on every state that MD sampled well."""
    samples = load_tempering_samples("ala2-vacuum")
    discard = load_reference("ala2-vacuum")["discarded_iterations_per_repeat"]
    xyz = load_bundled_trajectory("ala2-vacuum")
    md_phi, md_psi = ala2.collective_variables["phi"](xyz), ala2.collective_variables["psi"](xyz)
    pt_phi = samples["phi"][:, discard:, 0].astype(np.float64)  # state 0 is 300 K
    pt_psi = samples["psi"][:, discard:, 0].astype(np.float64)
    # ff96 in vacuum at 300 K: phi < 0 splits into C5 (phi < -1.9 rad) and C7eq at the density
    # minimum near phi = -110 degrees; alpha_R is almost empty.
    regions = {
        "phi_positive": lambda phi, psi: phi > 0,
        "C5": lambda phi, psi: phi < -1.9,
        "C7eq": lambda phi, psi: (phi > -1.9) & (phi < 0),
    }
    compared = 0
    for name, region in regions.items():
        md_in = region(md_phi, md_psi)
        entries = int(np.sum(md_in[1:] & ~md_in[:-1]))
        if entries < 10:  # too few visits for a block error to mean anything
            print(f"{name}: not compared, plain MD entered it {entries} times (fraction {md_in.mean():.4f})")
            continue
        p_md, e_md = block_average(md_in.astype(float), n_blocks=20)
        per_repeat = np.array([region(a, b).mean() for a, b in zip(pt_phi, pt_psi)])
        p_pt, e_pt = per_repeat.mean(), per_repeat.std(ddof=1) / np.sqrt(len(per_repeat))
        z = abs(p_md - p_pt) / np.hypot(e_md, e_pt)
        print(f"{name}: plain MD {p_md:.4f} +- {e_md:.4f}, PT at 300 K {p_pt:.4f} +- {e_pt:.4f}, z = {z:.2f} ({entries} MD entries)")
        assert z < NSIGMA_CUTOFF, f"{name}: MD {p_md:.4f} +- {e_md:.4f}, PT {p_pt:.4f} +- {e_pt:.4f}"
        compared += 1
    assert compared >= 2


def test_tempering_energies_agree_with_plain_md(ala2):
    """Mean potential energy in phi < 0 at 300 K: the PT's cold replica vs the bundled plain MD.

    A sampler that heats the molecule shows here before it shows in populations: a PT run
    that redrew velocities every 0.5 ps at a friction of 1/ps came out 0.25 kT above plain
    MD, 7 standard errors (benchmarks/langevin_velocity_refresh.py).
    """
    import torch

    from openmm_bg.reference.bundled import bundled_path
    from openmm_bg.reference.estimates import cold_replica_mean_energy
    from openmm_bg.energies import OpenMMEnergy

    energy = OpenMMEnergy(ala2.system, ala2.temperature, platform="Reference")
    means, errors = [], []
    for name in ("ala2-vacuum-300K-c7eq.dcd", "ala2-vacuum-300K-c7eq-2.dcd", "ala2-vacuum-300K-md.dcd"):
        xyz = load_trajectory(bundled_path(name), ala2.topology, trajectory_topology=bundled_path("ala2-vacuum-300K-md.pdb"))
        xyz = xyz.astype(np.float64)
        u = energy(torch.from_numpy(xyz.reshape(len(xyz), -1))).numpy()
        a = ala2.collective_variables["phi"](xyz) < 0
        mean, error = block_average(u[a], n_blocks=20)
        means.append(mean)
        errors.append(error)
    w = 1.0 / np.square(errors)
    u_md, e_md = float(np.sum(w * means) / np.sum(w)), float(1.0 / np.sqrt(np.sum(w)))

    discard = load_reference("ala2-vacuum")["discarded_iterations_per_repeat"]
    per_repeat = cold_replica_mean_energy(load_tempering_samples("ala2-vacuum"), lambda s: s["phi"][:, :, 0] < 0, discard)
    u_tempering, e_tempering = per_repeat.mean(), per_repeat.std(ddof=1) / np.sqrt(len(per_repeat))
    z = abs(u_md - u_tempering) / np.hypot(e_md, e_tempering)
    print(f"<u | phi < 0>: plain MD {u_md:.3f} +- {e_md:.3f} kT (runs {np.round(means, 3)}), "
          f"PT 300 K {u_tempering:.3f} +- {e_tempering:.3f} kT, z = {z:.1f}")
    assert z < NSIGMA_CUTOFF, f"plain MD {u_md:.3f} +- {e_md:.3f} kT, PT at 300 K {u_tempering:.3f} +- {e_tempering:.3f} kT"


def test_cold_replica_mean_energy_against_a_direct_mean_and_bad_input():
    from openmm_bg.reference.estimates import cold_replica_mean_energy

    rng = np.random.default_rng(5)
    temperatures = np.array([300.0, 400.0])
    samples = {"temperatures": temperatures, "potential_energy": rng.normal(-40.0, 5.0, (2, 30, 2)),
               "phi": rng.uniform(-np.pi, np.pi, (2, 30, 2))}
    got = cold_replica_mean_energy(samples, lambda s: s["phi"][:, :, 0] < 0, discard=10)
    kT = MOLAR_GAS_CONSTANT * 300.0
    for r in range(2):
        keep = samples["phi"][r, 10:, 0] < 0
        assert got[r] == pytest.approx(samples["potential_energy"][r, 10:, 0][keep].mean() / kT, rel=1e-12)
    with pytest.raises(ValueError, match=r"shape \(2, 30\)"):
        cold_replica_mean_energy(samples, lambda s: s["phi"][:, :, 0].ravel() < 0)
    with pytest.raises(ValueError, match="no kept iteration in the state"):
        cold_replica_mean_energy(samples, lambda s: s["phi"][:, :, 0] > 10.0)


def test_c7ax_basin_restraint_is_zero_inside_and_matches_its_formula_outside(ala2):
    """scripts/make_c7ax_basin_data.py: frames inside the flat bottom sample the unbiased energy."""
    import importlib.util
    import math
    from pathlib import Path

    import openmm
    from openmm import unit

    from openmm_bg.molecules.collective_variables import backbone_dihedral_indices

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_c7ax_basin_data.py"
    spec = importlib.util.spec_from_file_location("make_c7ax_basin_data", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    indices = backbone_dihedral_indices(ala2.topology, "phi")[0]
    centre, half, k = np.deg2rad(63.0), np.deg2rad(57.0), 1000.0
    restrained = script.restrained_system(ala2.system, indices, centre, half, k)
    contexts = [openmm.Context(s, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")) for s in (ala2.system, restrained)]
    frames = np.concatenate([load_bundled_trajectory("ala2-vacuum")[:400:40],
                             md.load(str(DATA_DIR / "ala2-vacuum-c7ax-start.pdb")).xyz.astype(np.float64)])
    phi = md.compute_dihedrals(md.Trajectory(frames, ala2.topology), [indices])[:, 0]
    assert (phi < 0).any() and (phi > 0).any()
    for x, angle in zip(frames, phi):
        energies = []
        for context in contexts:
            context.setPositions(x)
            energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        excess = max(0.0, abs((angle - centre + math.pi) % (2 * math.pi) - math.pi) - half)
        # phi from mdtraj is float32: relative 1e-6
        assert energies[1] - energies[0] == pytest.approx(0.5 * k * excess**2, rel=1e-6, abs=1e-6)
        if excess == 0.0:
            assert energies[1] == energies[0]


@pytest.mark.slow
def test_parallel_tempering_populations_match_quadrature_on_a_double_well(tmp_path):
    """The whole tempering pipeline (openmmtools sampler, seeded Langevin move, storage,
    reader) on one particle in a tilted double well in x: at every temperature the
    population of x > 0 agrees with quadrature within 4 block standard errors.

    The barrier is 10 kT at 300 K, so the coldest replica gets its x > 0 population
    through the exchanges.  About 4 minutes on 2 cores.
    """
    import openmm

    a, b, c, k = 2.5e5, 0.1, 37.4, 1000.0  # kJ/mol and nm: minima at +-0.1 nm, barrier 25 kJ/mol
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce(f"{a}*(x^2-{b}^2)^2 + {c}*x + 0.5*{k}*(y^2+z^2)")
    force.addParticle(0, [])
    system.addForce(force)
    temperatures = np.array([300.0, 450.0, 675.0, 1000.0])
    storage = tmp_path / "dw.nc"
    run_parallel_tempering(system, np.array([[-b, 0.0, 0.0]]), temperatures, storage, 20000, steps_per_iteration=200,
                           timestep=0.002, seed=1, progress=False)
    data = read_parallel_tempering(storage)
    x = np.asarray(data.positions)[200:, :, 0, 0]
    states = np.asarray(data.replica_states)[200:]
    grid = np.linspace(-0.3, 0.3, 200001)
    u = a * (grid**2 - b**2) ** 2 + c * grid
    for state, temperature in enumerate(temperatures):
        weight = np.exp(-(u - u.min()) / (MOLAR_GAS_CONSTANT * temperature))
        exact = weight[grid > 0].sum() / weight.sum()
        positive = (x[states == state] > 0).astype(float)
        blocks = [block.mean() for block in np.array_split(positive, 20)]
        error = np.std(blocks, ddof=1) / np.sqrt(len(blocks))
        assert abs(positive.mean() - exact) < NSIGMA_CUTOFF * error, (temperature, positive.mean(), exact, error)
