"""The 2-D particle dimer: its energy against a plain loop, the OpenMM System against the numpy
energy through the package's bridge, its states, and its bundled MD."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from helpers import NSIGMA
from openmm_bg.energies import OpenMMEnergy
from openmm_bg.energies.particle_dimer import ParticleDimer, dimer_distance, in_plane, particle_dimer_system, start_positions
from openmm_bg.molecules.states import BUILTIN_STATES
from openmm_bg.molecules.systems import get_system, list_systems
from openmm_bg.molecules.trajectories import load_trajectory
from openmm_bg.reference import DATA_DIR
from openmm_bg.reference.bundled import bundled_path

STATES = ("closed", "open")


@pytest.fixture(scope="module")
def mol():
    return get_system("particle-dimer")


@pytest.fixture(scope="module")
def bundled(mol) -> dict[str, np.ndarray]:
    """The bundled MD of each state, float64 nm, shape (n_frames, 38, 3)."""
    return {
        state: load_trajectory(bundled_path(f"particle-dimer-{state}.dcd"), mol.topology,
                               trajectory_topology=bundled_path(f"particle-dimer-{state}.pdb")).astype(np.float64)
        for state in STATES
    }


def loop_energy(xy: np.ndarray) -> float:
    """The model's energy of one configuration (38, 2), written term by term from the paper's definition."""
    n = len(xy)
    u = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            if (i, j) != (0, 1):
                u += 1.0 * (1.1 / np.hypot(*(xy[i] - xy[j]))) ** 12
    s = 2.0 * (np.hypot(*(xy[0] - xy[1])) - 1.5)
    u += -0.5 * s - 25.0 * s**2 + 10.0 * s**4
    u += 20.0 * (xy[0, 0] + xy[1, 0]) ** 2 + 20.0 * xy[0, 1] ** 2 + 20.0 * xy[1, 1] ** 2
    for v in xy.ravel():
        if abs(v) > 3.0:
            u += 2.0 * 100.0 * (abs(v) - 3.0) ** 2
    return u


def configurations(n: int = 12, seed: int = 0) -> np.ndarray:
    """In-plane test configurations, shape (n, 38, 2), nm: the relaxed closed and open starts jiggled,
    every third one stretched so that particles lie outside the wall at +-3 nm."""
    energy = ParticleDimer()
    closed, _, open_ = energy.stationary_distances()
    starts = np.stack([start_positions(energy, closed), start_positions(energy, open_)])
    rng = np.random.default_rng(seed)
    xy = starts[np.arange(n) % 2] + rng.normal(scale=0.05, size=(n, 38, 2))
    xy[::3] *= 1.15
    return xy


def test_energy_against_a_plain_loop():
    energy = ParticleDimer()
    xy = configurations(6)
    assert (np.abs(xy) > 3.0).any(axis=(1, 2)).sum() >= 2  # the wall is exercised
    expected = np.array([loop_energy(x) for x in xy])
    np.testing.assert_allclose(energy.energy_numpy(xy), expected, rtol=1e-12)
    np.testing.assert_allclose(energy(torch.as_tensor(xy)).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(energy(torch.as_tensor(xy).reshape(6, 76)).numpy(), expected, rtol=1e-12)
    # the wall term alone: one particle 0.5 nm beyond it in x and 0.25 nm in y adds 2 * 100 * (0.25 + 0.0625)
    moved = xy[1].copy()
    moved[5] = [3.5, -3.25]
    inside = xy[1].copy()
    inside[5] = [2.999, -2.999]
    assert loop_energy(moved) - energy.energy_numpy(moved)[0] == pytest.approx(0.0, abs=1e-9)
    assert energy.energy_numpy(np.stack([inside]))[0] == pytest.approx(loop_energy(inside), rel=1e-12)


def test_system_matches_the_numpy_energy_through_the_bridge(mol, bundled):
    energy = ParticleDimer()
    rng = np.random.default_rng(1)
    random = rng.uniform(-3.6, 3.6, size=(10, 38, 2))  # overlaps (energies up to 1e15 kT) and the wall
    md_frames = np.concatenate([bundled[state][::400, :, :2] for state in STATES])
    for xy in (configurations(), random, md_frames):
        expected = energy.energy_numpy(xy)
        assert np.isfinite(expected).all()
        np.testing.assert_allclose(mol.reduced_potential(in_plane(xy)), expected, rtol=1e-6)
        with OpenMMEnergy(mol.system, mol.temperature) as bridge:
            np.testing.assert_allclose(bridge(torch.as_tensor(in_plane(xy))).numpy(), expected, rtol=1e-6)


def test_forces_through_the_bridge_match_autograd_of_the_numpy_energy(mol):
    xy = torch.as_tensor(configurations(8, seed=2)).requires_grad_()
    energy = ParticleDimer()
    (grad_xy,) = torch.autograd.grad(energy(xy).sum(), xy)
    x = torch.as_tensor(in_plane(xy.detach().numpy())).requires_grad_()
    with OpenMMEnergy(mol.system, mol.temperature) as bridge:
        (grad,) = torch.autograd.grad(bridge(x).sum(), x)
    np.testing.assert_allclose(grad[:, :, :2].numpy(), grad_xy.numpy(), rtol=1e-6, atol=1e-6 * grad_xy.abs().max().item())
    assert grad[:, :, 2].abs().max().item() == 0.0  # at z = 0 the z term has no force


def test_z_is_an_independent_standard_normal_term_and_temperature_sets_kt(mol):
    xy = configurations(5, seed=3)
    z = np.random.default_rng(4).normal(size=(5, 38, 1))
    u = ParticleDimer().energy_numpy(xy)
    xyz = np.concatenate([xy, z], axis=-1)
    np.testing.assert_allclose(mol.reduced_potential(xyz), u + 0.5 * (z**2).sum(axis=(1, 2)), rtol=1e-6)
    # a System built for 450 K has the model's energy in its kT at 450 K, and 1.5 times less at 675 K
    from openmm_bg.energies.openmm_bridge import reduced_energies

    hot = particle_dimer_system(temperature=450.0)
    np.testing.assert_allclose(reduced_energies(hot, 450.0, in_plane(xy), platform="Reference"), u, rtol=1e-6)
    np.testing.assert_allclose(reduced_energies(hot, 675.0, in_plane(xy), platform="Reference"), u / 1.5, rtol=1e-6)
    # the in-plane distance ignores z
    np.testing.assert_allclose(dimer_distance(xyz), np.hypot(*(xy[:, 0] - xy[:, 1]).T), rtol=1e-12)


def test_bond_minima_and_barrier_top_and_the_states_split_there(mol):
    energy = ParticleDimer()
    closed, top, open_ = energy.stationary_distances()
    assert abs(closed - 1.0) < 0.1 and abs(open_ - 2.0) < 0.1
    d = torch.tensor([closed, top, open_], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(energy.dimer_bond(d).sum(), d)
    assert slope.abs().max().item() < 1e-9
    grid = np.linspace(0.7, 2.3, 160001)
    v = energy.dimer_bond(grid)
    assert abs(grid[np.argmin(np.where(grid < 1.5, v, np.inf))] - closed) < 2e-5
    assert abs(grid[np.argmin(np.where(grid > 1.5, v, np.inf))] - open_) < 2e-5
    between = (grid > closed) & (grid < open_)
    assert abs(grid[between][np.argmax(v[between])] - top) < 2e-5
    assert energy.dimer_bond(top) - energy.dimer_bond(closed) == pytest.approx(15.07, abs=0.01)
    # BUILTIN_STATES writes the barrier top as a number: it must be this root
    for name, sign in (("closed", "<"), ("open", ">")):
        number = re.fullmatch(rf"dimer_distance {sign} ([0-9.]+)", BUILTIN_STATES["particle-dimer"][name]).group(1)
        assert float(number) == pytest.approx(top, abs=1e-12)
    at_top = in_plane(start_positions(energy, top, relax=False))
    for offset, state in ((-1e-6, "closed"), (1e-6, "open")):
        moved = at_top.copy()
        moved[1, 0] += offset
        assert mol.states[state](moved)[0] and not mol.states[({"closed", "open"} - {state}).pop()](moved)[0]


def test_registered_system(mol):
    assert "particle-dimer" in list_systems()
    assert mol.positions.shape == (38, 3) and mol.n_atoms == 38 and (mol.positions[:, 2] == 0).all()
    assert mol.topology.n_atoms == 38 and mol.system.getNumConstraints() == 0
    assert mol.states["closed"](mol.positions)[0] and not mol.states["open"](mol.positions)[0]
    assert np.isfinite(mol.reduced_potential(mol.positions)).all()
    xy = configurations(6, seed=5)
    for table in (mol.collective_variables, mol.states):
        for key, function in table.items():
            clone = pickle.loads(pickle.dumps(function))
            np.testing.assert_array_equal(clone(in_plane(xy)), function(in_plane(xy)), err_msg=key)
    membership = np.stack([mol.states[s](in_plane(xy)) for s in STATES])
    np.testing.assert_array_equal(membership.sum(0), 1)


def test_bad_input():
    energy = ParticleDimer()
    with pytest.raises(ValueError, match=r"\(batch, 38, 2\) or \(batch, 76\)"):
        energy(torch.zeros(3, 38, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(n_frames, 38, 2\)"):
        energy.energy_numpy(np.zeros((3, 37, 2)))
    with pytest.raises(TypeError, match="ParticleDimer"):
        particle_dimer_system(energy="dimer")
    with pytest.raises(ValueError, match="rm must be"):
        ParticleDimer(rm=-1.0)
    with pytest.raises(ValueError, match="one minimum, not two"):
        ParticleDimer(c=-40.0).stationary_distances()
    with pytest.raises(ValueError, match=r"2 or 3"):
        dimer_distance(np.zeros((4, 38, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., n_particles, 2\)"):
        in_plane(np.zeros((38, 3)))
    with pytest.raises(ValueError, match="temperature"):
        particle_dimer_system(temperature=-1.0)


# --- bundled MD ---------------------------------------------------------------------------------


def _provenance(name: str) -> dict[str, str]:
    text = (DATA_DIR / "README.md").read_text()
    section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    return dict(re.findall(r"^- (\w+): (.*)$", section, flags=re.MULTILINE))


@pytest.mark.parametrize("state", STATES)
def test_bundled_md_is_in_the_state_its_name_says(mol, bundled, state):
    xyz = bundled[state]
    assert xyz.shape == (4000, 38, 3) and (xyz[:, :, 2] == 0).all()
    assert mol.states[state](xyz).all()
    assert np.isfinite(mol.reduced_potential(xyz[::100])).all()
    for suffix in (".dcd", ".pdb"):
        entry = _provenance(f"particle-dimer-{state}{suffix}")
        assert "scripts/make_particle_dimer_data.py" in entry["command"] and entry["seed"].startswith(str(1 + STATES.index(state)))


def laplacian(xy: np.ndarray) -> np.ndarray:
    """The model's Laplacian in the plane, sum over all 2n coordinates of d^2 u / dv^2, shape (n_frames,).

    Written from the model's terms: a radial pair term f(r) in 2-D adds 2 (f'' + f' / r), which is
    2 * 144 eps (rm / r)^12 / r^2 for the repulsion; the restraint adds 8 k; the wall 4 k_w for each
    coordinate outside it.  Checked against autograd in the test below."""
    n = xy.shape[1]
    i, j = np.triu_indices(n, 1)
    keep = ~((i == 0) & (j == 1))
    r2 = ((xy[:, i[keep]] - xy[:, j[keep]]) ** 2).sum(-1)
    total = (288.0 * (1.1**2 / r2) ** 6 / r2).sum(-1)
    d = np.linalg.norm(xy[:, 0] - xy[:, 1], axis=-1)
    s = 2.0 * (d - 1.5)
    first, second = 2.0 * (-0.5 - 50.0 * s + 40.0 * s**3), 4.0 * (-50.0 + 120.0 * s**2)
    total += 2.0 * (second + first / d) + 8.0 * 20.0
    return total + 4.0 * 100.0 * (np.abs(xy) > 3.0).sum(axis=(1, 2))


@pytest.mark.parametrize("state", STATES)
def test_bundled_md_samples_the_model_at_the_systems_temperature(bundled, state):
    """Configurational temperature (Rugh, Phys. Rev. Lett. 78, 772 (1997); Butler et al., J. Chem. Phys.
    109, 6519 (1998)): for a density exp(-u) that vanishes at infinity, integration by parts gives
    <|grad u|^2> = <laplacian u>, so their ratio is 1 exactly when the frames sample exp(-u) of the
    model at the System's temperature.  In a state held by a 15 kT barrier the boundary term at the
    dividing line is negligible.  Measured: 1.004 +- 0.004 (closed), 1.003 +- 0.006 (open)."""
    xy = torch.as_tensor(bundled[state][:, :, :2]).requires_grad_()
    (grad,) = torch.autograd.grad(ParticleDimer()(xy).sum(), xy, create_graph=True)
    squared = (grad * grad).sum(dim=(1, 2)).detach().numpy()
    lap = laplacian(xy.detach().numpy())
    # the analytic Laplacian against the trace of the autograd Hessian, on a few frames (one stretched past the wall)
    few = torch.cat([xy[:3], 1.12 * xy[3:4]]).detach().requires_grad_()
    (g,) = torch.autograd.grad(ParticleDimer()(few).sum(), few, create_graph=True)
    flat = g.reshape(len(few), -1)
    trace = sum(torch.autograd.grad(flat[:, k].sum(), few, retain_graph=True)[0].reshape(len(few), -1)[:, k] for k in range(flat.shape[1]))
    assert (np.abs(few.detach().numpy()) > 3.0).any()
    np.testing.assert_allclose(laplacian(few.detach().numpy()), trace.detach().numpy(), rtol=1e-10)
    ratio = squared.mean() / lap.mean()
    blocks = [a.mean() / b.mean() for a, b in zip(np.array_split(squared, 20), np.array_split(lap, 20))]
    error = np.std(blocks, ddof=1) / np.sqrt(len(blocks))
    assert abs(ratio - 1.0) < NSIGMA * error, (ratio, error)
    assert error < 0.01  # the test has the power to see a kT off by a few per cent


# --- the umbrella-sampling reference script ------------------------------------------------------


def _umbrella_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "run_particle_dimer_umbrella.py"
    spec = importlib.util.spec_from_file_location("run_particle_dimer_umbrella", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_umbrella_analysis_recovers_a_one_dimensional_free_energy():
    """The script's MBAR analysis on windows of a 1-D density exp(-v(d)), v the dimer bond, each window
    represented by 100 quantiles of its biased density (a deterministic stand-in for exact samples):
    dF and the profile against quadrature.  Measured: dF within 0.001 kT, the profile within 0.06 kT
    (the quantiles' binning) where it is below 8 kT."""
    script = _umbrella_script()
    energy = ParticleDimer()
    centres = script.window_centres(0.75, 2.35, 0.05)
    kappa = 400.0
    grid = np.linspace(0.4, 2.7, 400001)
    v = energy.dimer_bond(grid)
    quantiles = (np.arange(100) + 0.5) / 100
    d_series = np.empty((len(quantiles), len(centres)))
    for k, centre in enumerate(centres):
        biased = v + 0.5 * kappa * (grid - centre) ** 2
        cdf = np.cumsum(np.exp(-(biased - biased.min())))
        d_series[:, k] = np.interp(quantiles * cdf[-1], cdf, grid)
    result = script.analyse(d_series, centres, kappa, discard=0, n_bins=32, n_blocks=2, n_bootstrap=2, seed=0)
    p = np.exp(-(v - v.min()))
    split = energy.barrier_distance()
    assert result["delta_f_kT"] == pytest.approx(-np.log(p[grid > split].sum() / p[grid < split].sum()), abs=0.01)
    edges = np.array(result["profile"]["bin_edges_nm"])
    mass = np.array([p[(grid >= a) & (grid < b)].sum() for a, b in zip(edges[:-1], edges[1:])]) / p.sum()
    with np.errstate(divide="ignore"):
        exact = -np.log(mass / np.diff(edges))
    low = exact - exact.min() < 8.0
    assert low.sum() >= 12
    np.testing.assert_allclose(np.array(result["profile"]["free_energy_kT"])[low], exact[low], atol=0.1)


def test_umbrella_exchange_follows_metropolis_on_the_bias():
    script = _umbrella_script()
    centres = np.array([1.0, 1.1, 1.2])
    d = np.array([1.12, 0.98, 1.2])  # windows 0 and 1 hold each other's configurations: a swap lowers the bias
    order, accepted = script.exchange(d, centres, 400.0, 0, np.random.default_rng(0))
    np.testing.assert_array_equal(order, [1, 0, 2])
    np.testing.assert_array_equal(accepted, [True, False])
    # a swap that raises the bias by delta is taken with probability exp(-delta)
    d = np.array([1.0, 1.1, 1.2])
    delta = 400.0 * 0.1**2  # b_0(1.1) + b_1(1.0) - 0
    rng = np.random.default_rng(1)
    taken = np.mean([script.exchange(d, centres, 400.0, 1, rng)[1][1] for _ in range(20000)])
    assert abs(taken - np.exp(-delta)) < NSIGMA * np.sqrt(np.exp(-delta) * (1 - np.exp(-delta)) / 20000)
