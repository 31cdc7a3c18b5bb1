"""The particle-dimer generator: the ordering of identical particles, the generator's density, bad input, the command.

The ordering is checked as a permutation that keeps the energy, as a canonical form
(every relabelling of a frame orders to the same frame), and statistically as a
fundamental domain: i.i.d. particles land in the ordered set with probability 1 / |G|.
"""

from __future__ import annotations

import math

import mdtraj as md
import numpy as np
import pytest
import torch

from helpers import NSIGMA
from openmm_bg.coordinates.permutation import ReferenceOrdering, square_lattice
from openmm_bg.energies.particle_dimer import ParticleDimer
from openmm_bg.molecules.systems import get_system
from openmm_bg.recipes.particle_dimer import (
    Whitening,
    check_particle_positions,
    load_particle_dimer_frames,
    mirror_images,
    particle_dimer_generator,
    particle_dimer_ordering,
)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """40 bundled frames of each state, (80, 38, 2), nm."""
    loaded = load_particle_dimer_frames(stride=100)
    return np.concatenate(list(loaded.values()))


@pytest.fixture(scope="module")
def energy() -> ParticleDimer:
    return ParticleDimer()


def relabelled(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each frame with its solvent shuffled and, in half of them, the dimer's ends swapped."""
    out = x.copy()
    for f in range(len(x)):
        order = np.concatenate([rng.permutation(2) if f % 2 else np.arange(2), 2 + rng.permutation(x.shape[1] - 2)])
        out[f] = x[f, order]
    return out


def test_the_ordering_is_a_permutation_that_keeps_the_energy(frames, energy):
    ordering = particle_dimer_ordering(energy)
    scrambled = relabelled(frames, np.random.default_rng(0))
    order = ordering.permutation(scrambled)
    assert (np.sort(order, axis=1) == np.arange(38)).all()
    ordered = ordering.reorder(scrambled)
    assert np.array_equal(ordered, np.take_along_axis(scrambled, order[:, :, None], axis=1))
    np.testing.assert_allclose(energy.energy_numpy(ordered), energy.energy_numpy(frames), rtol=1e-12)
    assert ordering.is_ordered(ordered).all() and not ordering.is_ordered(scrambled).any()
    assert (ordered[:, 0, 0] < ordered[:, 1, 0]).all()  # the dimer's group orders x0 < x1
    # a canonical form: every relabelling of a frame orders to the same frame, and ordering is idempotent
    np.testing.assert_array_equal(ordering.reorder(relabelled(frames, np.random.default_rng(1))), ordered)
    np.testing.assert_array_equal(ordering.reorder(ordered), ordered)
    assert ordering.log_group_order == pytest.approx(math.log(2) + math.lgamma(37), rel=1e-14)


def test_iid_particles_land_in_the_ordered_set_with_probability_one_over_the_group_order():
    """The ordered set is a fundamental domain: it holds 1/|G| of any permutation-invariant density."""
    rng = np.random.default_rng(3)
    ordering = ReferenceOrdering(3, [[0, 1, 2]], [np.array([[-1.0, 0.0], [1.0, 0.3], [0.2, 1.0]])])
    n = 20_000
    inside = ordering.is_ordered(rng.normal(size=(n, 3, 2)))
    p = 1.0 / math.factorial(3)
    assert abs(inside.mean() - p) < NSIGMA * math.sqrt(p * (1 - p) / n)
    # the relabelled frames all land inside it
    assert ordering.is_ordered(ordering.reorder(rng.normal(size=(200, 3, 2)))).all()


def test_mirror_images_keep_the_energy(frames, energy):
    images = mirror_images(frames[:10])
    np.testing.assert_allclose(energy.energy_numpy(images), np.tile(energy.energy_numpy(frames[:10]), 4), rtol=1e-12)


def test_square_lattice_and_bad_orderings():
    lattice = square_lattice(36, 3.0)
    assert lattice.shape == (36, 2) and np.allclose(np.unique(lattice[:, 0]), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    with pytest.raises(ValueError, match="perfect square"):
        square_lattice(35, 3.0)
    with pytest.raises(ValueError, match="disjoint"):
        ReferenceOrdering(4, [[0, 1], [1, 2]], [np.eye(2), np.eye(2)])
    with pytest.raises(ValueError, match="shape"):
        particle_dimer_ordering().reorder(np.zeros((2, 37, 2)))


def test_a_tiny_generator_has_a_consistent_log_density(frames, energy):
    """Round trip and log-density against autograd's Jacobian, in float64."""
    ordered = particle_dimer_ordering(energy).reorder(frames)
    generator = particle_dimer_generator(ordered, energy, n_blocks=1, hidden=(8,), seed=0)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the output layers start at zero: leave the identity
    x = torch.as_tensor(ordered[:3])
    z, ladj = generator.flow.forward(x)
    back, ladj_back = generator.flow.inverse(z)
    np.testing.assert_allclose(back.reshape(3, -1).detach(), x.reshape(3, -1), atol=1e-10)
    np.testing.assert_allclose((ladj + ladj_back).detach(), 0.0, atol=1e-10)
    for k in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: generator.flow.forward(v.reshape(1, 38, 2))[0][0], x[k].reshape(-1))
        assert float(ladj[k].detach()) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-8)
    expected = -0.5 * (z**2).sum(1) - 0.5 * 76 * math.log(2 * math.pi) + ladj
    np.testing.assert_allclose(generator.log_prob(x).detach(), expected.detach(), rtol=1e-12)


def test_whitening_has_unit_covariance_and_a_constant_log_determinant(frames):
    x = torch.as_tensor(frames.reshape(len(frames), -1))
    layer = Whitening.fit(x)
    z, ladj = layer.forward(x)
    cov = torch.cov(z.T)
    np.testing.assert_allclose(torch.diagonal(cov), 1.0, atol=1e-6)
    assert float(ladj[0]) == pytest.approx(-0.5 * float(torch.linalg.slogdet(torch.cov(x.T))[1]), rel=1e-6)


@pytest.mark.parametrize(
    "positions, message",
    [
        (np.zeros((2, 37, 3)), "has 37 particles; the particle dimer has 38"),
        (np.full((1, 38, 2), np.nan), "non-finite"),
        (np.zeros((4, 38)), "shape"),
    ],
)
def test_bad_positions_get_a_clear_error(positions, message):
    with pytest.raises(ValueError, match=message):
        check_particle_positions(positions)


def test_positions_outside_the_box_get_a_clear_error(frames):
    in_angstrom = frames[:3] * 10.0
    with pytest.raises(ValueError, match=r"outside the box .*positions must be in nm"):
        check_particle_positions(in_angstrom)
    # the soft wall lets MD frames go a little beyond 3 nm: those are fine
    assert np.abs(frames).max() > 3.0
    check_particle_positions(frames)


def test_a_trajectory_of_the_wrong_particle_count_gets_a_clear_error(tmp_path):
    mol = get_system("particle-dimer")
    short = md.Trajectory(mol.positions[None, :37].astype(np.float32), mol.topology.subset(range(37)))
    path = tmp_path / "short.dcd"
    short.save_dcd(str(path))
    with pytest.raises(ValueError, match="37 atoms vs topology with 38"):
        load_particle_dimer_frames([path])


def test_the_command_refuses_bad_input_with_one_line(capsys, tmp_path):
    from openmm_bg.cli import main

    assert main(["toy", "particle-dimer", "--quick", "--samples", "0", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "n-samples must be a positive integer" in err


@pytest.mark.slow
def test_the_reduced_command_writes_the_profile_figure(tmp_path, capsys):
    import json

    from openmm_bg.cli import main

    assert main(["toy", "particle-dimer", "--quick", "--no-progress", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dF(open - closed)" in out and (tmp_path / "particle-dimer.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "particle-dimer.json").read_text())
    assert [e["temperature_K"] for e in summary["estimates"]] == [300.0, 450.0]


def test_mixture_weights_use_the_mixture_density(frames, energy):
    """A sample of one component is weighted with (q_1 + q_2) / 2; two equal components give the component's own weight."""
    from openmm_bg.recipes.particle_dimer import _mixture_log_weight

    ordered = particle_dimer_ordering(energy).reorder(frames)
    first = particle_dimer_generator(ordered, energy, n_blocks=1, hidden=(8,), seed=0)
    second = particle_dimer_generator(ordered[::-1].copy(), energy, n_blocks=1, hidden=(8,), seed=1)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    sample = first.sample(50, generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_allclose(_mixture_log_weight([first, first], sample, 1.0), sample["log_weight"], rtol=1e-12)
    x = torch.as_tensor(sample["x"])
    with torch.no_grad():
        log_q = torch.stack([first.log_prob(x), second.log_prob(x)]).numpy()
    expected = -sample["energy"] - (np.logaddexp(log_q[0], log_q[1]) - math.log(2))
    np.testing.assert_allclose(_mixture_log_weight([first, second], sample, 1.0), expected, rtol=1e-12)


def test_the_toy_commands_written_out_particle_defaults_match_the_recipe():
    from openmm_bg.commands.toy import PARTICLE_DEFAULTS
    from openmm_bg.recipes.particle_dimer import ParticleDimerSettings

    assert PARTICLE_DEFAULTS == {name: getattr(ParticleDimerSettings(), name) for name in PARTICLE_DEFAULTS}
