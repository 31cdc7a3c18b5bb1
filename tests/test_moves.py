"""Tests of the Boltzmann-generator moves for openmmtools (openmm_bg.moves).

Statistical checks compare against analytic or quadrature references with a
``NSIGMA`` cut and errors corrected for correlation with pymbar's statistical
inefficiency.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
import yaml
from openmmtools import cache, mcmc, states, testsystems
from openmmtools.utils import deserialize, serialize
from pymbar import timeseries

from openmm_bg.coordinates import InternalCoordinateNormalization, InternalCoordinateTransform
from openmm_bg.simulation.langevin import SeededLangevinMove
from openmm_bg.generator.prior import NormalPrior
from openmm_bg.energies.toy_systems import double_well_system
from openmm_bg.flows import Sequential
from openmm_bg.flows.base import Bijection
from openmm_bg.generator.checkpoints import save_generator
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.generator.recipes import realnvp_generator
from openmm_bg.units import kt_kjmol
from openmm_bg.moves import BoltzmannGeneratorMove, LatentMetropolisMove, clear_generator_cache, latent_log_acceptance, place_in_frame

from helpers import NSIGMA  # the shared sigma cut of the statistical tests
TEMPERATURE = 300.0 * unit.kelvin
KT = kt_kjmol(TEMPERATURE)
SIGMA_HO = 0.1  # nm, width of the harmonic oscillator used throughout


@pytest.fixture
def context_cache():
    return cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"))


def harmonic_oscillator():
    """openmmtools' 3-D oscillator with kT / K = SIGMA_HO^2."""
    K = KT / SIGMA_HO**2 * unit.kilojoule_per_mole / unit.nanometer**2
    return testsystems.HarmonicOscillator(K=K, mass=39.948 * unit.amu)


def exact_generator():
    # realnvp starts as the identity map, so with sigma = SIGMA_HO it is the oscillator's Boltzmann density
    return realnvp_generator(event_shape=[1, 3], n_blocks=2, hidden=[8], sigma=SIGMA_HO)


def perturbed_generator(scale: float, seed: int = 0):
    # the initial weights too come from the seed: from torch's global generator they depended on which tests ran before
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = realnvp_generator(event_shape=[1, 3], n_blocks=2, hidden=[8], sigma=SIGMA_HO)
    torch_generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=torch_generator, dtype=parameter.dtype))
    return generator


def ho_states(temperature=TEMPERATURE):
    ho = harmonic_oscillator()
    thermo = states.ThermodynamicState(ho.system, temperature)
    sampler = states.SamplerState(ho.positions)
    return thermo, sampler


def mean_and_error(series: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error, corrected for correlation (statistical inefficiency)."""
    series = np.asarray(series, dtype=np.float64)
    g = timeseries.statistical_inefficiency(series) if series.std() > 0 else 1.0
    return float(series.mean()), float(series.std(ddof=1) * math.sqrt(g / len(series)))


def assert_within(series: np.ndarray, expected: float, what: str) -> None:
    mean, error = mean_and_error(series)
    print(f"{what}: {mean:.5f} +- {error:.5f}, expected {expected:.5f}")
    assert error > 0, f"{what}: zero error bar, the chain did not move"
    assert abs(mean - expected) < NSIGMA * error, f"{what}: {mean:.5f} +- {error:.5f} differs from {expected:.5f} by more than {NSIGMA} sigma"


# --- exactness ------------------------------------------------------------------------


def test_generator_equal_to_target_accepts_every_proposal(context_cache):
    thermo, sampler = ho_states()
    move = BoltzmannGeneratorMove(exact_generator(), n_proposals=50, seed=1)
    start = np.array(sampler.positions.value_in_unit(unit.nanometer))
    for _ in range(4):
        move.apply(thermo, sampler, context_cache)
    assert move.n_proposed == 200
    assert move.acceptance_rate == 1.0
    assert not np.array_equal(start, sampler.positions.value_in_unit(unit.nanometer))


def test_rejections_leave_sampler_state_bit_for_bit(context_cache):
    thermo, _ = ho_states()
    rng = np.random.default_rng(0)
    sampler = states.SamplerState(
        rng.normal(0, SIGMA_HO, (1, 3)) * unit.nanometer,
        velocities=rng.normal(0, 1, (1, 3)) * unit.nanometer / unit.picosecond,
        box_vectors=np.diag([3.0, 3.1, 3.2]) * unit.nanometer,
    )
    before = [np.array(q.value_in_unit(q.unit)) for q in (sampler.positions, sampler.velocities, sampler.box_vectors)]
    # a generator 500 times wider than the target: every proposal costs ~1e5 kT
    far = realnvp_generator(event_shape=[1, 3], n_blocks=1, hidden=[4], sigma=50.0)
    move = BoltzmannGeneratorMove(far, n_proposals=20, seed=2)
    for _ in range(5):
        move.apply(thermo, sampler, context_cache)
    assert move.statistics["n_accepted"] == 0 and move.statistics["n_proposed"] == 100
    after = [np.array(q.value_in_unit(q.unit)) for q in (sampler.positions, sampler.velocities, sampler.box_vectors)]
    for name, a, b in zip(("positions", "velocities", "box_vectors"), before, after):
        assert np.array_equal(a, b), f"rejected proposals changed the {name}"


class _HalfBroken(Bijection):
    """Identity whose inverse returns NaN where z_0 > 0 (a flow that fails on part of the latent space)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return torch.where(z[:, :1] > 0, torch.full_like(z, float("nan")), z), z.new_zeros(z.shape[0])


def test_nonfinite_proposals_are_rejected_and_counted(context_cache):
    thermo, sampler = ho_states()
    generator = BoltzmannGenerator(NormalPrior(3, SIGMA_HO), _HalfBroken(), None, event_shape=(1, 3)).double()
    move = BoltzmannGeneratorMove(generator, n_proposals=200, seed=3)
    move.apply(thermo, sampler, context_cache)
    stats = move.statistics
    # the other half is exact, so everything that is finite is accepted
    assert stats["n_nonfinite"] + stats["n_out_of_domain"] + stats["n_accepted"] == 200
    assert 60 < stats["n_nonfinite"] + stats["n_out_of_domain"] < 140
    assert np.all(np.isfinite(sampler.positions.value_in_unit(unit.nanometer)))


# --- one principal domain for sampling and moves ----------------------------------------

# normalised torsions on and around the cut; the offset 2 rad rotates the cut, so the
# radian torsion of the 0.5 row (2 + pi / 2) lies beyond pi but is inside the turn
_TURN = [-1.0, 1.0, math.nextafter(1.0, 0.0), math.nextafter(-1.0, -2.0), 0.5, 0.0]
_IN_TURN = [True, False, True, False, True, True]


def _four_atom_generator(guarded: bool):
    from openmm_bg.coordinates import GuardedCoordinates

    ic = InternalCoordinateTransform(np.array([[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 2, 1, 0]]), remove_rigid_body=True)
    norm = InternalCoordinateNormalization(
        ic.circular, mean=torch.tensor([0.15, 0.15, 0.15, 1.9, 1.9, 0.0]), std=torch.tensor([0.01, 0.01, 0.01, 0.1, 0.1, 1.0]), offset=torch.tensor([0.0, 0, 0, 0, 0, 2.0])
    )
    flow = Sequential(GuardedCoordinates(ic, norm)) if guarded else Sequential(ic, norm)
    generator = BoltzmannGenerator(NormalPrior(6), flow, lambda x: (x**2).sum(dim=(1, 2)), event_shape=(4, 3)).double()
    z = torch.zeros(len(_TURN), 6, dtype=torch.float64)
    z[:, 5] = torch.tensor(_TURN, dtype=torch.float64)
    # every draw of the prior returns these latents (the flow's latent is the normalised coordinate)
    generator.prior.sample = lambda n, *args, **kwargs: z[:n].clone()
    return generator, z


def _four_atom_states():
    system = openmm.System()
    bonds = openmm.HarmonicBondForce()
    for i in range(4):
        system.addParticle(12.0)
    for i in range(3):
        bonds.addBond(i, i + 1, 0.15, 1000.0)
    system.addForce(bonds)
    start = np.array([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.2, 0.14, 0.0], [0.35, 0.15, 0.03]])
    return states.ThermodynamicState(system, TEMPERATURE), states.SamplerState(start * unit.nanometer)


@pytest.mark.parametrize("guarded", [True, False], ids=["GuardedCoordinates", "transform+normalisation"])
def test_sampling_and_moves_agree_on_the_principal_domain(guarded, context_cache):
    from openmm_bg.coordinates.guarded import principal_domain
    from openmm_bg.moves import inverse_with_domain
    from openmm_bg.sampling import draw_samples

    generator, z = _four_atom_generator(guarded)
    expected = torch.tensor(_IN_TURN)
    n_out = int((~expected).sum())
    # the one check, on the normalised torsion: the half-open turn [-1, 1)
    layer = generator.flow.layers[0]
    assert principal_domain(layer if guarded else generator.flow.layers[1], z).tolist() == _IN_TURN
    # the move's inverse
    x, ladj, valid = inverse_with_domain(generator, z)
    assert valid.tolist() == _IN_TURN
    assert torch.isnan(x[~valid]).all() and torch.isfinite(x[valid]).all() and torch.isfinite(ladj[valid]).all()
    # sampling: the generator's own draw and the sample files
    sample = generator.sample(len(z))
    assert sample.in_domain.tolist() == _IN_TURN and sample.n_out_of_domain == n_out
    assert torch.isposinf(sample.energy[~expected]).all() and torch.isneginf(sample.log_weight[~expected]).all()
    assert torch.isfinite(sample.log_weight[expected]).all()
    torch.testing.assert_close(sample.x[expected], x[valid], rtol=0, atol=0)
    drawn = draw_samples(generator, len(z), batch_size=len(z))
    assert drawn.n_out_of_domain == n_out and drawn.n_written == len(z) - n_out
    # the move rejects and counts exactly the same rows
    thermo, sampler = _four_atom_states()
    move = BoltzmannGeneratorMove(generator, n_proposals=len(z), seed=0)
    move.apply(thermo, sampler, context_cache)
    assert move.statistics["n_out_of_domain"] == n_out and move.n_proposed == len(z)
    # inside the turn, forward undoes inverse: one preimage per configuration
    inside = expected & (z[:, 5].abs() < 1)
    back, _ = generator.flow.forward(x[inside])
    torch.testing.assert_close(back, z[inside], rtol=0, atol=1e-9)


def test_saturated_torsions_are_out_of_the_domain_on_both_sides():
    from openmm_bg.coordinates import CircularToReal
    from openmm_bg.coordinates.guarded import inverse_in_domain

    # tanh(+-25) rounds to +-1 in float64: neither is a torsion that CircularToReal.forward accepts
    flow = Sequential(CircularToReal(torch.tensor([True, False])))
    x, ladj, valid = inverse_in_domain(flow, torch.tensor([[25.0, 0.0], [-25.0, 0.0], [3.0, 0.0]], dtype=torch.float64))
    assert valid.tolist() == [False, False, True]
    assert torch.isnan(x[:2]).all() and torch.isnan(ladj[:2]).all()
    flow.forward(x[2:])  # the valid row maps back


def _double_well_reference():
    x = np.linspace(-4.0, 4.0, 20001)
    u = x**4 - 6.0 * x**2 + x  # DoubleWell(a=4, b=12, c=1, d=1) along x
    w = np.exp(-(u - u.min()))
    w /= w.sum()
    return float((w * x**2).sum()), float(w[x > 0].sum())


def test_langevin_plus_bg_move_reproduces_double_well(context_cache):
    system = double_well_system(temperature=300.0)
    thermo = states.ThermodynamicState(system, TEMPERATURE)
    sampler = states.SamplerState(np.array([[-1.7, 0.0, 0.0]]) * unit.nanometer)
    # N(0, diag(1.3, 1, 1)^2): not the target, so the density ratio matters; y and z match it exactly
    generator = BoltzmannGenerator(NormalPrior(3, 1.0), _Scale(torch.tensor([1.3, 1.0, 1.0], dtype=torch.float64)), None, event_shape=(1, 3))
    bg = BoltzmannGeneratorMove(generator, n_proposals=2, seed=4)
    md = SeededLangevinMove(timestep=0.005, collision_rate=5.0, n_steps=10, seed=4)
    sampler_mcmc = mcmc.MCMCSampler(thermo, sampler, mcmc.SequenceMove([md, bg]))
    x = []
    for _ in range(4000):
        sampler_mcmc.run(1, context_cache=context_cache)
        x.append(sampler_mcmc.sampler_state.positions.value_in_unit(unit.nanometer)[0, 0])
    x = np.array(x)
    x2_ref, right_ref = _double_well_reference()
    print(f"BG acceptance {bg.acceptance_rate:.3f}")
    assert_within(x**2, x2_ref, "<x^2> (nm^2)")
    assert_within((x > 0).astype(float), right_ref, "P(x > 0)")


class _Scale(Bijection):
    """``z = x / width`` on the flattened (1, 3) configuration: a Gaussian of widths ``width``."""

    def __init__(self, width: torch.Tensor):
        super().__init__()
        self.register_buffer("width", width)

    def forward(self, x):
        flat = x.reshape(x.shape[0], -1)
        return flat / self.width, -torch.log(self.width).sum().expand(x.shape[0])

    def inverse(self, z):
        return z * self.width, torch.log(self.width).sum().expand(z.shape[0])


# --- latent Metropolis ------------------------------------------------------------------


def test_latent_move_with_nonlinear_flow_samples_the_oscillator(context_cache):
    # a perturbed RealNVP has a configuration-dependent Jacobian, so a wrong Jacobian term would bias the moments
    generator = perturbed_generator(scale=0.4, seed=5)
    with torch.no_grad():
        _, ladj = generator.flow.forward(SIGMA_HO * torch.randn(2000, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert ladj.std() > 0.05, "the flow is too close to linear for this test to see the Jacobians"
    thermo, sampler = ho_states()
    move = LatentMetropolisMove(generator, step_size=0.06, n_steps=10, seed=6)
    x = []
    for _ in range(600):
        move.apply(thermo, sampler, context_cache)
        x.append(sampler.positions.value_in_unit(unit.nanometer)[0])
    x = np.array(x)
    print(f"latent acceptance {move.acceptance_rate:.3f}, step size {move.step_size}")
    assert 0.1 < move.acceptance_rate < 0.95
    for k in range(3):
        assert_within(x[:, k] ** 2 / SIGMA_HO**2, 1.0, f"<x_{k}^2> / sigma^2")


def test_latent_log_acceptance_is_the_reversible_one():
    # forward and backward ratios of one step must be exact negatives (detailed balance with symmetric proposals)
    generator = perturbed_generator(scale=0.6, seed=7)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = SIGMA_HO * torch.randn(50, 1, 3, generator=g, dtype=torch.float64)
        z, ladj_xz = generator.flow.forward(x)
        x_new, ladj_zx_new = generator.flow.inverse(z + 0.3 * torch.randn(z.shape, generator=g, dtype=z.dtype))
        _, ladj_xz_new = generator.flow.forward(x_new)
        _, ladj_zx_old = generator.flow.inverse(z)
    u = lambda x: (x.reshape(len(x), -1) ** 2).sum(1).numpy() / (2 * SIGMA_HO**2)  # noqa: E731
    forward = latent_log_acceptance(u(x), u(x_new), ladj_xz, ladj_zx_new)
    backward = latent_log_acceptance(u(x_new), u(x), ladj_xz_new, ladj_zx_old)
    np.testing.assert_allclose(forward, -backward, atol=1e-9)
    # and equal the log ratio of the latent target densities exp(-u) |det dx/dz|
    np.testing.assert_allclose(forward, (-u(x_new) + ladj_zx_new.numpy()) - (-u(x) + ladj_zx_old.numpy()), atol=1e-9)


def test_latent_step_size_adapts_only_during_burn_in(context_cache):
    thermo, sampler = ho_states()
    move = LatentMetropolisMove(exact_generator(), step_size=5.0, n_steps=25, adapt_steps=100, target_acceptance=0.5, seed=8)
    for _ in range(4):
        move.apply(thermo, sampler, context_cache)
    assert not move.adapting and move.n_adapted == 100
    frozen = move.step_size
    assert frozen < 5.0, "a far too large step should shrink"
    move.apply(thermo, sampler, context_cache)
    assert move.step_size == frozen


# --- rigid body removed: internal coordinates only ------------------------------------

R0 = 0.15  # nm; the bond stiffness follows from SIGMA_R
SIGMA_R, THETA0, SIGMA_THETA = 0.03, 1.9, 0.3


def _triatomic_system():
    system = openmm.System()
    for _ in range(3):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    for i, j in ((0, 1), (1, 2)):
        bonds.addBond(i, j, R0, KT / SIGMA_R**2)
    angles = openmm.HarmonicAngleForce()
    angles.addAngle(0, 1, 2, THETA0, KT / SIGMA_THETA**2)
    system.addForce(bonds)
    system.addForce(angles)
    return system


def _triatomic_generator():
    ic = InternalCoordinateTransform(np.array([[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1]]), remove_rigid_body=True)
    # a Gaussian over (r1, r2, theta) that is deliberately not the target
    norm = InternalCoordinateNormalization(ic.circular, mean=torch.tensor([0.16, 0.16, 1.8]), std=torch.tensor([0.04, 0.04, 0.35]))
    return BoltzmannGenerator(NormalPrior(3), Sequential(ic, norm), None, event_shape=(3, 3)).double()


def test_rigid_body_removed_move_samples_internal_density_and_keeps_pose(context_cache):
    thermo = states.ThermodynamicState(_triatomic_system(), TEMPERATURE)
    start = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.45], [0.24, 0.2, 0.5]])
    sampler = states.SamplerState(start * unit.nanometer)
    move = BoltzmannGeneratorMove(_triatomic_generator(), n_proposals=20, seed=9)
    r, theta = [], []
    for _ in range(800):
        move.apply(thermo, sampler, context_cache)
        x = sampler.positions.value_in_unit(unit.nanometer)
        b1, b2 = x[0] - x[1], x[2] - x[1]
        r.append(np.linalg.norm(b1))
        theta.append(np.arccos(b1 @ b2 / np.linalg.norm(b1) / np.linalg.norm(b2)))
    x = sampler.positions.value_in_unit(unit.nanometer)
    # the pose is that of the start: same first atom, bond direction and plane
    np.testing.assert_allclose(x[0], start[0], atol=1e-12)
    axis = (x[1] - x[0]) / np.linalg.norm(x[1] - x[0])
    np.testing.assert_allclose(axis, (start[1] - start[0]) / np.linalg.norm(start[1] - start[0]), atol=1e-12)
    assert abs(np.cross(start[1] - start[0], start[2] - start[0]) @ (x[2] - x[0])) < 1e-12
    # Cartesian volume element: r^2 for the bond, sin(theta) for the angle
    grid_r = np.linspace(1e-4, 0.4, 40001)
    w_r = grid_r**2 * np.exp(-0.5 * ((grid_r - R0) / SIGMA_R) ** 2)
    grid_t = np.linspace(0, np.pi, 40001)
    w_t = np.sin(grid_t) * np.exp(-0.5 * ((grid_t - THETA0) / SIGMA_THETA) ** 2)
    print(f"acceptance {move.acceptance_rate:.3f}")
    assert_within(np.array(r), float((w_r * grid_r).sum() / w_r.sum()), "<r> (nm)")
    assert_within(np.array(theta), float((w_t * grid_t).sum() / w_t.sum()), "<theta> (rad)")


def test_place_in_frame_is_rigid_and_copies_the_pose():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5, 3))
    ref = rng.normal(size=(5, 3))
    placed = place_in_frame(x, ref, (0, 1, 2))
    d_before = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    d_after = np.linalg.norm(placed[:, :, None] - placed[:, None], axis=-1)
    np.testing.assert_allclose(d_after, d_before, atol=1e-12)
    np.testing.assert_allclose(placed[:, 0], np.broadcast_to(ref[0], (4, 3)), atol=1e-12)
    # no reflection: the signed volume of four atoms is kept
    vol = lambda a: np.einsum("ni,ni->n", np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), a[:, 3] - a[:, 0])  # noqa: E731
    np.testing.assert_allclose(vol(placed), vol(x), atol=1e-12)


# --- randomness, serialisation, openmmtools integration ---------------------------------


def _one_apply(move, context_cache):
    thermo, sampler = ho_states()
    move.apply(thermo, sampler, context_cache)
    return np.array(sampler.positions.value_in_unit(unit.nanometer))


def test_copies_draw_different_streams_and_a_seed_reproduces_them(context_cache):
    runs = []
    for _ in range(2):
        move = BoltzmannGeneratorMove(exact_generator(), n_proposals=3, seed=11)
        first, second = copy.deepcopy(move), copy.deepcopy(move)
        runs.append((_one_apply(first, context_cache), _one_apply(second, context_cache), _one_apply(move, context_cache)))
    (a1, b1, c1), (a2, b2, c2) = runs
    assert not np.array_equal(a1, b1) and not np.array_equal(a1, c1)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and np.array_equal(c1, c2)
    assert first.generator is move.generator, "copies should share the read-only generator"


def test_getstate_is_yaml_safe_and_round_trips(tmp_path, context_cache):
    generator = exact_generator()
    in_memory = LatentMetropolisMove(generator, step_size=0.02, seed=12)
    with pytest.raises(ValueError, match="checkpoint"):
        serialize(in_memory)
    path = save_generator(generator, tmp_path / "bg.pt", "openmm_bg.generator.recipes.realnvp_generator", dict(event_shape=[1, 3], n_blocks=2, hidden=[8], sigma=SIGMA_HO))
    for move in (LatentMetropolisMove(generator, step_size=0.02, checkpoint=path, seed=12), BoltzmannGeneratorMove(path, n_proposals=4, reference_temperature=300.0, seed=12)):
        _one_apply(move, context_cache)
        text = yaml.safe_dump(serialize(move))
        assert len(text) < 2000
        clear_generator_cache()
        restored, again = deserialize(yaml.safe_load(text)), deserialize(yaml.safe_load(text))
        assert type(restored) is type(move) and restored.statistics == move.statistics
        assert restored.generator is again.generator, "restored copies should share one loaded generator"
        # each restoration is a copy: it branches off its own stream
        assert not np.array_equal(_one_apply(restored, context_cache), _one_apply(again, context_cache))
    with pytest.raises(ValueError, match="does not hold the weights"):
        BoltzmannGeneratorMove(perturbed_generator(0.1), checkpoint=path)


def test_moves_run_in_mcmc_sampler_with_weighted_and_sequence_moves(context_cache):
    thermo, sampler = ho_states()
    bg = BoltzmannGeneratorMove(exact_generator(), n_proposals=2, seed=13)
    latent = LatentMetropolisMove(exact_generator(), step_size=0.03, n_steps=2, seed=13)
    md = SeededLangevinMove(timestep=0.002, n_steps=5, seed=13)
    move = mcmc.WeightedMove([(mcmc.SequenceMove([md, bg]), 0.5), (latent, 0.5)])
    sampler_mcmc = mcmc.MCMCSampler(thermo, sampler, move)
    sampler_mcmc.run(20, context_cache=context_cache)
    assert bg.n_proposed + latent.n_proposed > 0
    assert bg.n_accepted == bg.n_proposed


@pytest.mark.timeout(300)
def test_replica_exchange_writes_storage_and_resumes(tmp_path):
    from openmmtools.multistate import MultiStateReporter, ReplicaExchangeSampler

    path = save_generator(exact_generator(), tmp_path / "bg.pt", "openmm_bg.generator.recipes.realnvp_generator", dict(event_shape=[1, 3], n_blocks=2, hidden=[8], sigma=SIGMA_HO))
    ho = harmonic_oscillator()
    thermo_states = [states.ThermodynamicState(ho.system, t * unit.kelvin) for t in (300.0, 360.0)]
    bg = BoltzmannGeneratorMove(path, n_proposals=5, reference_temperature=300.0, seed=14)
    move = mcmc.SequenceMove([SeededLangevinMove(timestep=0.002, n_steps=5, seed=14), bg])
    storage = str(tmp_path / "re.nc")
    sampler = ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=3)
    reporter = MultiStateReporter(storage, checkpoint_interval=1)
    sampler.create(thermo_states, states.SamplerState(ho.positions), reporter)
    sampler.run()
    moves = [m.move_list[1] for m in sampler._mcmc_moves]
    # the tempered generator is exact at both temperatures
    assert all(m.n_proposed > 0 and m.n_accepted == m.n_proposed for m in moves)
    assert len({m._spawn_key for m in moves}) == 2, "the per-state copies share a random stream"
    proposed = [m.n_proposed for m in moves]
    reporter.close()
    del sampler

    clear_generator_cache()
    resumed = ReplicaExchangeSampler.from_storage(storage)
    assert resumed.iteration == 3
    resumed.extend(2)
    assert resumed.iteration == 5
    moves = [m.move_list[1] for m in resumed._mcmc_moves]
    assert all(isinstance(m, BoltzmannGeneratorMove) and m.checkpoint == str(path.resolve()) for m in moves)
    assert sum(m.n_proposed for m in moves) > sum(proposed)
    assert all(m.n_accepted == m.n_proposed for m in moves)
    assert len({m._spawn_key for m in moves}) == 2, "the restored per-state copies share a random stream"
    resumed._reporter.close()


def test_move_refuses_a_checkpoint_of_another_molecule_with_as_many_particles(tmp_path, context_cache):
    """A checkpoint that stores its molecule (as every trained one does) is checked against the
    System before any step: other charges on the same particle count are refused, the state
    untouched; the same molecule with heavier hydrogens and a restraint is accepted."""
    from openmm_bg.molecules import get_system
    from openmm_bg.molecules.loading import checkpoint_metadata
    from openmm_bg.simulation.langevin import repartition_hydrogen_mass

    ala2 = get_system("ala2-vacuum")
    path = save_generator(realnvp_generator(event_shape=[ala2.n_atoms, 3], n_blocks=1, hidden=[8], sigma=0.1), tmp_path / "bg.pt",
                          "openmm_bg.generator.recipes.realnvp_generator", dict(event_shape=[ala2.n_atoms, 3], n_blocks=1, hidden=[8], sigma=0.1),
                          metadata=checkpoint_metadata(ala2))
    other = copy.deepcopy(ala2.system)
    nonbonded = next(f for f in other.getForces() if isinstance(f, openmm.NonbondedForce))
    q, sigma, eps = nonbonded.getParticleParameters(4)
    nonbonded.setParticleParameters(4, -q, sigma, eps)
    sampler = states.SamplerState(ala2.positions * unit.nanometer)
    before = sampler.positions.copy()
    move = BoltzmannGeneratorMove(path, n_proposals=2, seed=0)
    with pytest.raises(ValueError, match=r"trained for another molecule \(ala2-vacuum, stored in .*bg.pt\): particle 4 has"):
        move.apply(states.ThermodynamicState(other, TEMPERATURE), sampler, context_cache)
    assert move.statistics["n_proposed"] == 0 and np.array_equal(sampler.positions, before)

    same = repartition_hydrogen_mass(ala2.system, ala2.openmm_topology, 3.0)
    restraint = openmm.CustomExternalForce("0.1*x^2")
    restraint.addParticle(0, [])
    same.addForce(restraint)
    move.apply(states.ThermodynamicState(same, TEMPERATURE), sampler, context_cache)
    assert move.statistics["n_proposed"] == 2
