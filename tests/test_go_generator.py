"""Generators of the trpzip2 C-alpha Go model (openmm_bg.recipes.go_model): round trip, exactness of the BG move, bad input.

The exactness check runs the BoltzmannGeneratorMove alone on the bead chain with only its
bonded terms (bonds and angles), where the internal coordinates are independent and each
marginal is known by one-dimensional quadrature: ``p(r) ~ r^2 exp(-k (r - r0)^2 / 2kT)`` and
``p(theta) ~ sin(theta) exp(-k (theta - theta0)^2 / 2kT)`` (the Jacobian of the internal
coordinates).  The proposal is deliberately too broad (its normalisation is fitted to
frames at 1.5 times the temperature), so a move that left out the generator densities would
sample the broad distribution and fail by many sigma.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch

from openmm_bg.molecules.go_model import FORCE_GROUPS
from openmm_bg.recipes.go_model import (
    compare_with_reference, folding_from_chain, folding_from_weights, go_molecule, load_go_reference, q_cores, run_chain, train_go_generator,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "benchmarks/results/go-model-reference/reference.json"
REFERENCE_RUNS = [ROOT / f"runs/go-model/reference/repeat{r}.nc" for r in range(8)]
#: a mean more than this many of its standard errors from the quadrature fails
SIGMA_CUT = 4.0


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bonded_only(system: openmm.System) -> openmm.System:
    """A copy of the Go model's System with only its bonds and angles."""
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for index in reversed(range(copy.getNumForces())):
        if copy.getForce(index).getForceGroup() not in (FORCE_GROUPS["bonds"], FORCE_GROUPS["angles"]):
            copy.removeForce(index)
    return copy


def _parameters(system: openmm.System):
    """Native lengths (nm) and force constants (kJ/mol/nm^2) of the bonds, native angles (rad) and constants of the angles, in chain order."""
    forces = [system.getForce(i) for i in range(system.getNumForces())]
    bonds = next(f for f in forces if isinstance(f, openmm.HarmonicBondForce))
    angles = next(f for f in forces if isinstance(f, openmm.HarmonicAngleForce))
    b = [bonds.getBondParameters(i) for i in range(bonds.getNumBonds())]
    a = [angles.getAngleParameters(i) for i in range(angles.getNumAngles())]
    assert [row[:2] for row in b] == [[i, i + 1] for i in range(len(b))] and [row[:3] for row in a] == [[i, i + 1, i + 2] for i in range(len(a))]
    return (np.array([row[2]._value for row in b]), np.array([row[3]._value for row in b]),
            np.array([row[3]._value for row in a]), np.array([row[4]._value for row in a]))


def _quadrature_mean(f, log_density, low, high):
    grid = np.linspace(low, high, 200001)
    log_p = log_density(grid)
    p = np.exp(log_p - log_p.max())
    return float(np.sum(f(grid) * p) / np.sum(p))


def _chain_frames(rng, n, r0, k_r, theta0, k_theta, kt):
    """Exact samples of the bonded-only chain (bonds and angles by rejection, torsions uniform), built by a transform."""
    from openmm_bg.coordinates import InternalCoordinateTransform

    n_beads = len(r0) + 1
    zm = [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1]] + [[i, i - 1, i - 2, i - 3] for i in range(3, n_beads)]
    transform = InternalCoordinateTransform(np.array(zm), remove_rigid_body=True)

    def draw(center, k, log_factor, bound, low, high):
        """Gaussian times exp(log_factor) on (low, high) by rejection; ``bound`` >= log_factor there."""
        out = np.empty(0)
        while out.size < n:
            x = rng.normal(center, math.sqrt(kt / k), 4 * n)
            x = x[(x > low) & (x < high)]
            out = np.concatenate([out, x[rng.random(x.size) < np.exp(log_factor(x) - bound)]])
        return out[:n]

    bonds = np.stack([draw(r, k, lambda x: 2 * np.log(x), 2 * math.log(r + 0.1), 0.0, r + 0.1) for r, k in zip(r0, k_r)], axis=1)
    angles = np.stack([draw(t, k, lambda x: np.log(np.sin(x)), 0.0, 0.0, math.pi) for t, k in zip(theta0, k_theta)], axis=1)
    torsions = rng.uniform(-math.pi, math.pi, (n, n_beads - 3))
    x, _ = transform.inverse(torch.as_tensor(np.concatenate([bonds, angles, torsions], axis=1)))
    return x.numpy()


def test_bead_chain_generator_round_trip():
    """The package's molecular generator takes the C-alpha chain (no rings, one atom per residue): 30 coordinates, exact round trip."""
    from openmm_bg.generator.recipes import molecular_generator_from_data

    molecule = go_molecule()
    rng = np.random.default_rng(0)
    frames = molecule.positions[None] + 0.01 * rng.standard_normal((64, 12, 3))
    generator, kwargs = molecular_generator_from_data(molecule.topology, frames, None, system=molecule.system,
                                                      n_blocks=1, hidden=[8], coupling="spline", n_bins=4)
    transform = generator.flow[0].transform
    assert transform.dim == 11 + 10 + 9
    assert [row[1:] for row in kwargs["zmatrix"][3:]] == [[i - 1, i - 2, i - 3] for i in range(3, 12)]  # each bead from the three before it
    x = torch.as_tensor(frames)
    with torch.no_grad():
        z, ladj = generator.flow.forward(x)
        back, ladj_back = generator.flow.inverse(z)
    # the rigid body is removed: compare the internal coordinates of the round trip
    q, _ = transform.forward(x)
    q_back, _ = transform.forward(back)
    assert torch.allclose(q, q_back, atol=1e-8)
    assert torch.allclose(ladj, -ladj_back, atol=1e-8)


def test_bg_move_is_exact_on_the_bonded_chain():
    """The move alone samples the analytic bond and angle marginals though its proposal is 1.5 times too hot."""
    from openmm_bg.generator.checkpoints import save_generator
    from openmm_bg.generator.recipes import molecular_generator_from_data
    from openmm_bg.analysis.states import decorrelated
    from openmm_bg.moves import BoltzmannGeneratorMove
    from openmm_bg.units import MOLAR_GAS_CONSTANT
    import openmm.unit as unit
    from openmmtools import cache, states

    molecule = go_molecule()
    system = _bonded_only(molecule.system)
    temperature = 300.0
    kt = MOLAR_GAS_CONSTANT * temperature
    r0, k_r, theta0, k_theta = _parameters(system)
    rng = np.random.default_rng(1)
    hot = _chain_frames(rng, 2000, r0, k_r, theta0, k_theta, 1.5 * kt)  # the proposal: the normalisation of frames 1.5x too hot
    generator, kwargs = molecular_generator_from_data(molecule.topology, hot, None, system=system, n_blocks=1, hidden=[8], coupling="circular-spline", n_bins=4)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.pt"
        save_generator(generator, path, "openmm_bg.generator.recipes.molecular_generator", kwargs)
        move = BoltzmannGeneratorMove(generator, n_proposals=20, checkpoint=path, seed=3)
        thermodynamic_state = states.ThermodynamicState(system, temperature * unit.kelvin)
        x0 = _chain_frames(rng, 1, r0, k_r, theta0, k_theta, kt)[0]
        sampler_state = states.SamplerState(x0 * unit.nanometer)
        context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"))
        n_steps = 400
        bond = np.empty(n_steps)
        angle = np.empty(n_steps)
        for step in range(n_steps):
            move.apply(thermodynamic_state, sampler_state, context_cache)
            x = np.asarray(sampler_state.positions.value_in_unit(unit.nanometer))
            bond[step] = np.linalg.norm(x[6] - x[5])  # bond 5
            u, v = x[4] - x[5], x[6] - x[5]
            angle[step] = math.acos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))
    assert 0.01 < move.acceptance_rate < 0.9
    expected = {
        "bond": _quadrature_mean(lambda r: (r - r0[5]) ** 2, lambda r: 2 * np.log(r) - k_r[5] * (r - r0[5]) ** 2 / (2 * kt), r0[5] - 0.06, r0[5] + 0.06),
        "angle": _quadrature_mean(lambda t: (t - theta0[4]) ** 2, lambda t: np.log(np.sin(t) + 1e-300) - k_theta[4] * (t - theta0[4]) ** 2 / (2 * kt), 0.0, math.pi),
    }
    for name, series in (("bond", (bond - r0[5]) ** 2), ("angle", (angle - theta0[4]) ** 2)):
        kept, g = decorrelated(series[20:], name)
        sigma = series[20:].std() * math.sqrt(g / series[20:].size)
        z = (series[20:].mean() - expected[name]) / sigma
        assert abs(z) < SIGMA_CUT, f"{name}: <(x - x0)^2> {series[20:].mean():.4g} vs quadrature {expected[name]:.4g} (z = {z:.1f})"
        # the proposal's variance is 1.5 times the target's: sampling it would fail by more than 1.5 cuts
        assert 0.5 * expected[name] / sigma > 1.5 * SIGMA_CUT


def test_folding_estimates_from_weights_and_chain():
    """Equal weights reproduce the counted fraction; a chain's error grows with its correlation."""
    q = np.r_[np.full(300, 0.9), np.full(100, 0.2)]
    row = folding_from_weights(np.zeros(q.size), q, n_bootstrap=50)
    assert row["p_folded"] == pytest.approx(0.75)
    assert row["dF"] == pytest.approx(math.log(3))
    assert 0 < row["p_folded_err"] < 0.05
    chain = folding_from_chain(np.tile(q, 3))  # three long blocks: strongly correlated
    assert chain["p_folded"] == pytest.approx(0.75)
    assert chain["statistical_inefficiency"] > 10
    assert np.array_equal(q_cores(np.array([0.1, 0.35, 0.5, 0.75, 0.95])), [-1, -1, 0, 1, 1])
    assert compare_with_reference([0.6], [0.03], [0.5], [0.04])[0] == pytest.approx(2.0)


def test_bad_input():
    molecule = go_molecule(349.7)
    assert molecule.temperature == 349.7
    with pytest.raises(ValueError, match="temperature"):
        go_molecule(-1.0)
    with pytest.raises(ValueError, match="not a Go model"):
        go_molecule(name="ala2-vacuum")
    with pytest.raises(ValueError, match="shape"):
        train_go_generator(molecule, np.zeros((10, 5, 3)))
    with pytest.raises(ValueError, match="finite"):
        train_go_generator(molecule, np.full((10, 12, 3), np.nan))
    with pytest.raises(ValueError, match="needs the generator"):
        run_chain(molecule, molecule.positions, 100, md_steps=10, proposals=5)
    with pytest.raises(ValueError, match="cores"):
        q_cores(np.zeros(3), (0.8, 0.2))
    with pytest.raises(FileNotFoundError):
        load_go_reference("/nonexistent/reference.json")


def test_move_of_another_molecule_fails_before_any_step(tmp_path):
    """A Go-model generator in a move on alanine dipeptide: a clear error, the state untouched."""
    from openmm_bg.generator.checkpoints import save_generator
    from openmm_bg.generator.recipes import molecular_generator_from_data
    from openmm_bg.molecules.systems import get_system
    from openmm_bg.moves import BoltzmannGeneratorMove
    import openmm.unit as unit
    from openmmtools import cache, states

    go = go_molecule()
    frames = go.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((8, 12, 3))
    generator, kwargs = molecular_generator_from_data(go.topology, frames, None, system=go.system, n_blocks=1, hidden=[8])
    save_generator(generator, tmp_path / "g.pt", "openmm_bg.generator.recipes.molecular_generator", kwargs)
    move = BoltzmannGeneratorMove(tmp_path / "g.pt", n_proposals=2, seed=0)
    ala2 = get_system("ala2-vacuum")
    sampler_state = states.SamplerState(ala2.positions * unit.nanometer)
    before = np.array(sampler_state.positions.value_in_unit(unit.nanometer))
    with pytest.raises(ValueError, match="12"):
        move.apply(states.ThermodynamicState(ala2.system, 300 * unit.kelvin), sampler_state, cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference")))
    assert np.array_equal(before, sampler_state.positions.value_in_unit(unit.nanometer))
    assert move.n_proposed == 0


@pytest.mark.slow
def test_generator_folded_fraction_matches_reference():
    """A generator trained at 349.7 K on the reference frames: folded fraction within the combined 2.5 sigma."""
    from openmm_bg.recipes.go_model import folding_from_generator, read_tempering_positions

    if not all(path.is_file() for path in REFERENCE_RUNS):
        pytest.skip("the tempering reference run (runs/go-model/reference) is not here")
    reference = load_go_reference(REFERENCE)
    k = 5
    frames = read_tempering_positions(REFERENCE_RUNS, discard=100, iterations=1500)[k]
    molecule = go_molecule(reference["temperatures"][k])
    training = train_go_generator(molecule, frames, seed=5, ml={"n_iterations": 300, "validate_every": 25, "keep": "best"}, kl={"n_iterations": 0})
    (row,) = folding_from_generator(training.generator.eval(), molecule.temperature, [molecule.temperature],
                                    molecule.collective_variables["q_native"], n_samples=20000, seed=11)
    z = compare_with_reference(row["p_folded"], row["p_folded_err"], reference["p_folded"][k], reference["p_folded_err"][k])
    assert abs(float(z)) < 2.5, row
