"""One contract test over every flow layer and over compositions, in float64.

Parameters are randomised first: every layer starts as the identity, and a
log-determinant test on the identity could not fail.
"""

import io

import pytest
import torch
from torch.autograd.functional import jacobian

from openmm_bg import flows
from openmm_bg.flows import (
    AdditiveCoupling,
    AffineCoupling,
    ExpScaling,
    Inverse,
    NICERBlock,
    Permutation,
    RealNVPBlock,
    Scaling,
    Sequential,
    SplineCoupling,
    SwapHalves,
    half_mask,
)

DIM = 5

LAYERS = {
    "nice": lambda: AdditiveCoupling(half_mask(DIM), hidden=(16, 16)),
    "nice-custom-mask": lambda: AdditiveCoupling(torch.tensor([True, False, True, False, False]), hidden=(8,)),
    "nicer": lambda: NICERBlock(DIM, hidden=(16,)),
    "scaling": lambda: Scaling(DIM),
    "exp-scaling": lambda: ExpScaling(DIM),
    "realnvp-coupling": lambda: AffineCoupling(half_mask(DIM, first=False), hidden=(16, 16), activation="tanh"),
    "realnvp-block": lambda: RealNVPBlock(DIM, hidden=(16,)),
    "swap": lambda: SwapHalves(DIM),
    "permutation": lambda: Permutation.random(DIM, torch.Generator().manual_seed(3)),
    "inverse": lambda: Inverse(RealNVPBlock(DIM, hidden=(8,))),
    "real_nvp": lambda: flows.real_nvp(DIM, n_blocks=2, hidden=(16,), permute=True),
    "nicer-net": lambda: flows.nicer(DIM, n_blocks=2, hidden=(16,)),
    # bound 1.5 puts some of the N(0, 1) test points on the identity tails
    "spline-coupling": lambda: SplineCoupling(half_mask(DIM), hidden=(16,), n_bins=6, bound=1.5),
    "neural_spline": lambda: flows.neural_spline(DIM, n_blocks=2, hidden=(16,), n_bins=4, bound=2.0, permute=True),
    "composition": lambda: Sequential(Scaling(DIM), NICERBlock(DIM, hidden=(8,)), SwapHalves(DIM), AffineCoupling(half_mask(DIM), hidden=(8,)), ExpScaling(DIM)),
}


#: Splines invert by solving a quadratic, which loses about three digits where a bin is
#: steep; their round trip is held to 1e-9 instead of 1e-10 (and 1e-12 for the ladj sum).
TOLERANCE = {"spline-coupling": 1e-9, "neural_spline": 1e-9}


def make(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    with torch.no_grad():
        for p in layer.parameters():
            # Scales and log-scales of O(0.5): far from the identity, still well conditioned.
            p.copy_(0.5 * torch.randn_like(p) + (1.0 if p.ndim == 1 and isinstance(layer, Scaling) else 0.0))
    return layer


def points(n=7, seed=1):
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def autograd_logdet(fn, x):
    out = []
    for xi in x:
        J = jacobian(lambda v: fn(v[None])[0][0], xi)
        out.append(torch.linalg.slogdet(J)[1])
    return torch.stack(out)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_round_trip(name):
    layer = make(name)
    x = points()
    z, _ = layer.forward(x)
    x_back, _ = layer.inverse(z)
    assert z.shape == x.shape and z.dtype == torch.float64
    tol = TOLERANCE.get(name, 1e-10)
    assert torch.allclose(x_back, x, atol=tol, rtol=0)
    z_back, _ = layer.forward(layer.inverse(z)[0])
    assert torch.allclose(z_back, z, atol=tol, rtol=0)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_ladj_matches_autograd_both_directions(name):
    layer = make(name)
    x = points()
    z, ladj_xz = layer.forward(x)
    _, ladj_zx = layer.inverse(z)
    assert ladj_xz.shape == (x.shape[0],) and ladj_zx.shape == (x.shape[0],)
    assert torch.allclose(ladj_xz, autograd_logdet(layer.forward, x), atol=1e-10, rtol=0)
    assert torch.allclose(ladj_zx, autograd_logdet(layer.inverse, z), atol=1e-10, rtol=0)
    assert torch.allclose(ladj_xz + ladj_zx, torch.zeros_like(ladj_xz), atol=TOLERANCE.get(name, 1e-12))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_parameter_gets_a_gradient(name):
    layer = make(name)
    x = points().requires_grad_()
    z, ladj = layer.forward(x)
    x_back, ladj_back = layer.inverse(z + 0.3)
    (z.square().sum() + ladj.sum() + x_back.square().sum() + ladj_back.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_save_load_round_trip(name):
    layer = make(name)
    x = points()
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    fresh = make(name)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    state = io.BytesIO()
    torch.save(layer.state_dict(), state)
    state.seek(0)
    fresh.load_state_dict(torch.load(state, weights_only=True))
    for other in (loaded, fresh):
        for a, b in zip(layer.forward(x), other.forward(x)):
            assert torch.equal(a, b)
        for a, b in zip(layer.inverse(x), other.inverse(x)):
            assert torch.equal(a, b)


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


def test_circular_to_real_contract():
    from openmm_bg.coordinates import CircularToReal

    layer = CircularToReal(torch.tensor([True, False, True, False, True]))
    y = torch.rand(7, DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.98 - 0.99
    u, ladj = layer.forward(y)
    back, ladj_back = layer.inverse(u)
    assert torch.allclose(back, y, atol=1e-12) and torch.allclose(ladj + ladj_back, torch.zeros(7, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(ladj, autograd_logdet(layer.forward, y), atol=1e-10)
    assert torch.allclose(ladj_back, autograd_logdet(layer.inverse, u), atol=1e-10)
    far = torch.full((1, DIM), 30.0, dtype=torch.float64)
    assert torch.isfinite(layer.inverse(far)[1]).all()
    with pytest.raises(ValueError, match="outside"):
        layer.forward(torch.ones(1, DIM, dtype=torch.float64))
