"""Flow layers beyond the bijection contract (tests/test_contract.py): identity start,
bounded scales, shape checks and construction errors."""

import pytest
import torch

from openmm_bg import flows
from openmm_bg.flows import AdditiveCoupling, AffineCoupling, Permutation, Sequential, half_mask

from test_contract import DIM, make, points


def test_new_coupling_layers_start_as_identity():
    x = points()
    for layer in (flows.real_nvp(DIM, n_blocks=2, hidden=(8,)).double(), flows.nicer(DIM, 2, (8,)).double()):
        z, ladj = layer.forward(x)
        assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(x.shape[0], dtype=x.dtype))


def test_log_scale_is_bounded():
    layer = AffineCoupling(half_mask(4), hidden=(8,), scale_bound=1.5).double()
    with torch.no_grad():
        for p in layer.scale.parameters():
            p.fill_(50.0)
    x = 10 * points(n=20, seed=2)[:, :4]
    z, ladj = layer.forward(x)
    assert torch.isfinite(z).all()
    assert (ladj.abs() <= 2 * 1.5 + 1e-12).all()


@pytest.mark.parametrize("bad", [torch.zeros(3, DIM + 1), torch.zeros(DIM), torch.zeros(2, 1, DIM)])
def test_wrong_shapes_raise_clear_errors(bad):
    for layer in (make("realnvp-block"), make("scaling"), make("permutation")):
        with pytest.raises(ValueError, match=rf"shape \(batch, {DIM}\)"):
            layer.forward(bad.double())
        with pytest.raises(ValueError, match=rf"shape \(batch, {DIM}\)"):
            layer.inverse(bad.double())


def test_invalid_construction():
    with pytest.raises(ValueError, match="both True and False"):
        AdditiveCoupling(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="rearrangement"):
        Permutation(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        flows.real_nvp(1)
    with pytest.raises(TypeError, match="Bijection"):
        Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="activation"):
        flows.MLP(2, 2, activation="sigmoidal")


def test_circular_to_real_domain():
    from openmm_bg.coordinates import CircularToReal

    layer = CircularToReal(torch.tensor([True, False, True, False, True]))
    far = torch.full((1, DIM), 30.0, dtype=torch.float64)
    assert torch.isfinite(layer.inverse(far)[1]).all()
    with pytest.raises(ValueError, match="outside"):
        layer.forward(torch.ones(1, DIM, dtype=torch.float64))
