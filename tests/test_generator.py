import math

import numpy as np
import pytest
import torch

from helpers import gaussian_generator, gaussian_log_partition
from openmm_bg.generator.prior import NormalPrior
from openmm_bg.energies import DoubleWell
from openmm_bg.flows import real_nvp
from openmm_bg.generator.model import BoltzmannGenerator

from helpers import NSIGMA  # the shared sigma cut of the statistical tests


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_prior_log_prob_matches_torch_normal(temperature):
    prior = NormalPrior(4, sigma=0.7)
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = torch.distributions.Normal(0.0, 0.7 * math.sqrt(temperature)).log_prob(z).sum(dim=1)
    assert torch.allclose(prior.log_prob(z, temperature), reference, atol=1e-12)
    assert torch.allclose(prior.energy(z, temperature) + prior.log_normalizer(temperature), -reference, atol=1e-12)


def test_prior_sample_variance_follows_temperature():
    prior = NormalPrior(2, sigma=1.5)
    n = 200_000
    for tau in (1.0, 3.0):
        z = prior.sample(n, tau, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        var = z.var(dim=0)
        expected = 1.5**2 * tau
        # standard error of a Gaussian sample variance: expected * sqrt(2 / n)
        assert torch.all((var - expected).abs() < NSIGMA * expected * math.sqrt(2 / n))


def test_prior_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigma"):
        NormalPrior(2, sigma=0.0)
    with pytest.raises(ValueError, match="temperature"):
        NormalPrior(2).sample(3, temperature=-1.0)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        NormalPrior(2).energy(torch.zeros(3, 5))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_exact_generator_has_constant_weights_equal_to_log_partition(temperature):
    gen = gaussian_generator()
    s = gen.sample(1000, temperature, generator=torch.Generator().manual_seed(0))
    assert s.x.shape == (1000, 3) and s.z.shape == (1000, 3)
    for field in (s.log_prob, s.energy, s.log_weight):
        assert field.shape == (1000,)
    # w = exp(-u) / p_X is exactly Z for every sample when p_X is the Boltzmann density.
    expected = gaussian_log_partition(temperature=temperature)
    assert torch.allclose(s.log_weight, torch.full_like(s.log_weight, expected), atol=1e-10)


def test_sample_log_prob_agrees_with_density_evaluation():
    torch.manual_seed(0)
    gen = BoltzmannGenerator(NormalPrior(2), real_nvp(2, n_blocks=2, hidden=(16,)), DoubleWell()).double()
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.3 * torch.randn_like(p))
    s = gen.sample(50, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(gen.log_prob(s.x), s.log_prob, atol=1e-10)
    assert torch.allclose(gen.energy(s.x), s.energy, atol=1e-12)
    assert torch.allclose(s.log_weight, -s.energy - s.log_prob, atol=1e-12)


def test_sampling_is_reproducible_with_a_seeded_generator():
    gen = gaussian_generator()
    a = gen.sample(10, generator=torch.Generator().manual_seed(5)).x
    b = gen.sample(10, generator=torch.Generator().manual_seed(5)).x
    assert torch.equal(a, b)


def test_nan_energy_is_reported_as_inf_with_minus_inf_weight():
    gen = gaussian_generator()
    gen.target.fn = lambda x: torch.where(x[:, 0] > 0, torch.full_like(x[:, 0], float("nan")), x[:, 0] ** 2)
    s = gen.sample(200, generator=torch.Generator().manual_seed(0))
    positive = s.x[:, 0] > 0
    assert torch.isposinf(s.energy[positive]).all() and torch.isneginf(s.log_weight[positive]).all()
    assert torch.equal(s.finite, ~positive)


def test_bad_input_raises_clear_errors():
    gen = gaussian_generator()
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        gen.log_prob(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        gen.log_prob(torch.tensor([[0.0, float("nan"), 1.0]], dtype=torch.float64))
    with pytest.raises(TypeError, match="callable"):
        BoltzmannGenerator(NormalPrior(2), real_nvp(2), energy=3.0, event_shape=(2,))
    with pytest.raises(ValueError, match="event_shape is required"):
        BoltzmannGenerator(NormalPrior(2), real_nvp(2), energy=lambda x: x.sum(1))
    with pytest.raises(TypeError, match="Bijection"):
        BoltzmannGenerator(NormalPrior(2), torch.nn.Linear(2, 2), DoubleWell())
    with pytest.raises(ValueError, match=r"energy function must return a tensor of shape \(4,\)"):
        BoltzmannGenerator(NormalPrior(2), real_nvp(2), lambda x: x, event_shape=(2,)).energy(torch.zeros(4, 2))


def test_generator_checkpoint_round_trip_without_training_data(tmp_path):
    from openmm_bg.generator.recipes import realnvp_generator
    from openmm_bg.generator.checkpoints import load_generator, save_generator

    kwargs = {"event_shape": [2], "n_blocks": 2, "hidden": [16]}
    gen = realnvp_generator(DoubleWell(), **kwargs)
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=rng, dtype=p.dtype))
    path = save_generator(gen, tmp_path / "g.pt", "openmm_bg.generator.recipes.realnvp_generator", kwargs, {"note": "test"})
    loaded = load_generator(path, energy=DoubleWell())
    x = torch.randn(5, 2, generator=rng, dtype=torch.float64)
    assert torch.equal(loaded.log_prob(x), gen.log_prob(x))
    # without an energy it still proposes and evaluates densities, but refuses energies
    bare = load_generator(path)
    xs, z, log_prob = bare.propose(4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(bare.log_prob(xs), log_prob, atol=1e-10)
    with pytest.raises(ValueError, match="no target energy"):
        bare.sample(3)


def test_generator_checkpoint_errors(tmp_path):
    from openmm_bg.generator.checkpoints import load_generator, save_generator

    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="could not read"):
        load_generator(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="not an openmm_bg generator checkpoint"):
        load_generator(other)
    with pytest.raises(ValueError, match="outside openmm_bg"):
        save_generator(gaussian_generator(), tmp_path / "x.pt", "os.system", {})
    from openmm_bg.generator.recipes import realnvp_generator

    path = save_generator(realnvp_generator(event_shape=[2], n_blocks=1), tmp_path / "g.pt", "openmm_bg.generator.recipes.realnvp_generator", {"event_shape": [2], "n_blocks": 1})
    state = torch.load(path, weights_only=True)
    state["builder_kwargs"]["n_blocks"] = 2
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not fit"):
        load_generator(path)
