"""The molecular generator recipe: guarded internal coordinates + normalisation + RealNVP."""

import math

import numpy as np
import pytest
import torch
from openmmtools import testsystems

from openmm_bg.generator.recipes import molecular_generator_from_data
from openmm_bg.generator.checkpoints import load_generator, save_generator


@pytest.fixture(scope="module")
def ala2():
    t = testsystems.AlanineDipeptideVacuum(constraints=None)
    import mdtraj as md

    top = md.Topology.from_openmm(t.topology)
    x0 = torch.tensor(np.asarray(t.positions.value_in_unit(t.positions.unit)), dtype=torch.float64)
    noise = 0.01 * torch.randn(200, *x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return t, top, x0 + noise


def perturbed(generator, scale=0.05, seed=1):
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in generator.flow[-1].parameters():  # the coupling layers
            p.add_(scale * torch.randn(p.shape, generator=rng, dtype=p.dtype))
    return generator


@pytest.mark.parametrize("coupling", ["affine", "spline", "circular-spline"])
def test_density_of_proposals_matches_density_evaluation(ala2, coupling):
    _, top, x = ala2
    gen, _ = molecular_generator_from_data(top, x, n_blocks=2, hidden=[32], coupling=coupling)
    gen = perturbed(gen)
    gen.prior.sigma = 0.2  # untrained, a unit prior would throw most torsions out of their [-1, 1) turn
    xs, z, log_prob = gen.propose(64, generator=torch.Generator().manual_seed(2))
    ok = torch.isfinite(log_prob)
    assert ok.sum() > 50
    assert torch.allclose(gen.log_prob(xs[ok]), log_prob[ok], atol=1e-8)
    # forward then inverse returns the same internal geometry (the pose is canonical)
    y, _ = gen.flow[0].forward(x[:5])
    back, _ = gen.flow[0].inverse(y)
    q1, _ = gen.flow[0].transform.forward(x[:5])
    q2, _ = gen.flow[0].transform.forward(back)
    assert torch.allclose(q1, q2, atol=1e-10)


def test_out_of_domain_latents_give_nan_positions_and_zero_weight(ala2):
    t, top, x = ala2
    from openmm_bg.energies import OpenMMEnergy

    gen, _ = molecular_generator_from_data(top, x, OpenMMEnergy(t.system, 300.0), n_blocks=1, hidden=[8])
    coords = gen.flow[0]
    y, _ = coords.forward(x[:4])
    y[1, coords.normalization.circular.nonzero()[0]] = 1.5  # a torsion beyond one turn
    y[2, coords.transform.angle_indices[0]] = 1e3  # an angle beyond pi
    before = coords.n_out_of_domain
    back, ladj = coords.inverse(y)
    assert coords.in_domain(y).tolist() == [True, False, False, True]
    assert torch.isnan(back[1]).all() and torch.isnan(back[2]).all() and torch.isfinite(back[[0, 3]]).all()
    assert torch.isnan(ladj[[1, 2]]).all() and coords.n_out_of_domain == before + 2
    # through the generator: such samples have +inf energy and -inf log weight
    with torch.no_grad():
        gen.prior.sigma = 30.0  # a wide prior throws many latents out of the domain
    s = gen.sample(200, generator=torch.Generator().manual_seed(3))
    bad = ~s.finite
    assert bad.any() and torch.isposinf(s.energy[bad]).all() and torch.isneginf(s.log_weight[bad]).all()
    assert not torch.isnan(s.log_weight).any()


@pytest.mark.parametrize("coupling", ["affine", "spline", "circular-spline"])
def test_molecular_checkpoint_reloads_without_training_data(ala2, tmp_path, coupling):
    _, top, x = ala2
    gen, kwargs = molecular_generator_from_data(top, x, n_blocks=2, hidden=[16], coupling=coupling, n_bins=5)
    gen = perturbed(gen)
    path = save_generator(gen, tmp_path / "ala2.pt", "openmm_bg.generator.recipes.molecular_generator", kwargs)
    loaded = load_generator(path)
    assert torch.equal(loaded.log_prob(x[:10]), gen.log_prob(x[:10]))
    assert torch.equal(loaded.flow[0].normalization.offset, gen.flow[0].normalization.offset)


def test_bad_positions(ala2):
    _, top, x = ala2
    with pytest.raises(ValueError, match=r"coupling must be one of \['circular-spline', 'spline', 'affine'\], got 'cubic'"):
        molecular_generator_from_data(top, x, n_blocks=1, coupling="cubic")
    with pytest.raises(ValueError, match=r"shape \(n_frames, 22, 3\)"):
        molecular_generator_from_data(top, x[:, :21], n_blocks=1)
