"""One contract test over every bijection of the package, flows and coordinate layers alike, in float64.

Every class that derives from :class:`openmm_bg.flows.Bijection` needs at least one
entry in :data:`CASES`; :func:`test_every_bijection_has_a_contract_case` finds the
classes by walking the subclasses, so a new layer cannot skip the contract:

* round trip ``x -> z -> x`` and ``z -> x -> z``;
* ``forward`` and ``inverse`` log-determinants of shape ``(batch,)`` that sum to zero;
* each log-determinant against the autograd Jacobian (for the non-square
  internal-coordinate maps, against the volume form their docstring defines);
* a gradient for the input and for every parameter, through both directions;
* ``torch.save``/``torch.load`` of the whole module and of its ``state_dict``.

Parameters are randomised first: the coupling layers start as the identity, and a
log-determinant test on the identity could not fail.  The coordinate layers run on
alanine dipeptide and its bundled MD frames.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import pkgutil
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch.autograd.functional import jacobian

import openmm_bg
from openmm_bg import flows
from openmm_bg.energies.harmonic_pair import HarmonicPairInBox, HarmonicPairTransform
from openmm_bg.recipes.particle_dimer import Whitening
from openmm_bg.coordinates import CircularToReal, GuardedCoordinates, InternalCoordinateNormalization, InternalCoordinateTransform, build_zmatrix
from openmm_bg.flows import (
    AdditiveCoupling,
    AffineCoupling,
    Bijection,
    CircularSplineCoupling,
    ExpScaling,
    Flatten,
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


def points(n: int = 7, seed: int = 1) -> torch.Tensor:
    """Standard normal test points, shape (n, DIM), float64."""
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- alanine dipeptide


@functools.lru_cache(maxsize=None)
def ala2() -> tuple[object, torch.Tensor]:
    """The alanine dipeptide topology and 20 of its bundled 300 K MD frames, shape (20, 22, 3), float64 nm."""
    from openmm_bg.molecules import get_system, load_bundled_trajectory

    frames = load_bundled_trajectory("ala2-vacuum", stride=500)
    return get_system("ala2-vacuum").topology, torch.as_tensor(frames, dtype=torch.float64)


def frames(seed: int, n: int = 3) -> torch.Tensor:
    """``n`` MD frames of alanine dipeptide, a different set for each seed, shape (n, 22, 3)."""
    return ala2()[1][n * seed : n * (seed + 1)]


def ic(**options) -> InternalCoordinateTransform:
    return InternalCoordinateTransform.from_topology(ala2()[0], **options)


def hydrogen_constraints() -> dict[tuple[int, int], float]:
    """Every bond to a hydrogen held at its length in the first frame (nm), as ``constraints=HBonds`` would."""
    topology, x = ala2()
    hydrogens = {atom.index for atom in topology.atoms if atom.element.symbol == "H"}
    return {
        (a.index, b.index): float((x[0, a.index] - x[0, b.index]).norm())
        for a, b in topology.bonds
        if (a.index in hydrogens) != (b.index in hydrogens)
    }


def constrained_ic() -> InternalCoordinateTransform:
    return InternalCoordinateTransform(build_zmatrix(ala2()[0]), constraints=hydrogen_constraints(), constraint_tolerance=None)


def normalization() -> InternalCoordinateNormalization:
    transform = ic()
    return InternalCoordinateNormalization.fit(transform.forward(ala2()[1])[0], transform.circular)


def guarded() -> GuardedCoordinates:
    return GuardedCoordinates(ic(), normalization())


def molecular_flow() -> Sequential:
    """A whole molecular flow: positions -> guarded normalised coordinates -> R^d -> RealNVP latent."""
    coordinates = guarded()
    return Sequential(coordinates, CircularToReal(coordinates.normalization.circular), flows.real_nvp(coordinates.dim, n_blocks=1, hidden=(16,)))


def circular_molecular_flow() -> Sequential:
    """Positions -> guarded normalised coordinates -> circular spline couplings: torsions stay angles to the latent."""
    coordinates = guarded()
    return Sequential(coordinates, flows.circular_spline(coordinates.dim, coordinates.normalization.circular, n_blocks=1, hidden=(16,), n_bins=4))


#: the periodic dimensions of the circular cases: two of five, one on each side of the half split
CIRCLES = torch.tensor([True, False, False, True, False])


def on_circles(layer, seed: int) -> torch.Tensor:
    """Test points with the CIRCLES dimensions uniform in (-0.99, 0.99) turns, the others N(0, 1)."""
    x = points(seed=seed)
    turns = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 100), dtype=x.dtype) * 1.98 - 0.99
    return torch.where(CIRCLES, turns, x)


def euler_rotation(theta: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """``Rz(phi) Ry(theta) Rz(psi)``, shape (3, 3); its Haar measure is ``sin(theta) dtheta dphi dpsi``."""

    def about(axis: int, angle: torch.Tensor) -> torch.Tensor:
        i, j = [k for k in range(3) if k != axis]
        m = torch.eye(3, dtype=angle.dtype)
        m[i, i], m[i, j], m[j, i], m[j, j] = torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)
        return m

    return about(2, phi) @ about(1, theta) @ about(2, psi)


def rigid_body_volume(layer: InternalCoordinateTransform, z: torch.Tensor) -> torch.Tensor:
    """The documented ladj of ``inverse`` without the rigid body, from an autograd Jacobian.

    The docstring defines ``ladj = log |det dx/d(q, t, theta, phi, psi)| - log sin(theta)``:
    the molecule, built in its canonical frame from ``q``, is rotated by Euler angles and
    translated by ``t``; this map of R^{3N} is square.  The value must not depend on the pose,
    so each sample gets a different one.
    """
    g = torch.Generator().manual_seed(7)
    out = []
    for q in z:
        pose = torch.rand(6, generator=g, dtype=q.dtype) * torch.tensor([1.0, 1.0, 1.0, 2.4, 6.0, 6.0], dtype=q.dtype)
        pose[3] += 0.3  # theta in (0.3, 2.7), well away from the poles

        def placed(v: torch.Tensor) -> torch.Tensor:
            canonical = layer.inverse(v[None, : layer.dim])[0][0]
            return (canonical @ euler_rotation(*v[layer.dim + 3 :]).T + v[layer.dim : layer.dim + 3]).reshape(-1)

        log_det = torch.linalg.slogdet(jacobian(placed, torch.cat([q, pose])))[1]
        out.append(log_det - torch.log(torch.sin(pose[3])))
    return torch.stack(out)


def constrained_volume(layer: InternalCoordinateTransform, z: torch.Tensor) -> torch.Tensor:
    """The documented ladj of ``inverse`` with constraints: the log-det of the full square map
    (constrained bonds free) at the constrained lengths."""
    full = ic()
    return autograd_log_det(full.inverse, full.forward(layer.inverse(z)[0])[0])


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """How to test one bijection.

    cls : the class ``build`` returns.
    build : a new layer (float64 and parameter randomisation are applied by :func:`make`).
    points : ``points(layer, seed)``, configurations in the domain of ``forward``.
    tolerance : round trip tolerance.
    ladj_sum : tolerance of ``ladj_forward + ladj_inverse == 0``.
    log_det : tolerance of the ladj against the autograd Jacobian.
    volume : ``volume(layer, z)``, the expected ladj of ``inverse`` when its Jacobian is not square.
    weight_scale : standard deviation of the randomised parameters.
    """

    cls: type
    build: Callable[[], Bijection]
    points: Callable[[Bijection, int], torch.Tensor] = lambda layer, seed: points(seed=seed)
    tolerance: float = 1e-10
    ladj_sum: float = 1e-12
    log_det: float = 1e-10
    volume: Callable[[Bijection, torch.Tensor], torch.Tensor] | None = None
    weight_scale: float = 0.5


def canonical_frames(layer: Bijection, seed: int) -> torch.Tensor:
    """MD frames mapped through ``inverse(forward(.))``: without the rigid body or with constraints, the
    frames ``forward`` and ``inverse`` reproduce exactly (canonical pose, constrained lengths)."""
    return layer.inverse(layer.forward(frames(seed))[0])[0].detach()


def normalized_frames(layer: InternalCoordinateNormalization, seed: int) -> torch.Tensor:
    """Internal coordinates of MD frames, each torsion in the turn [offset - pi, offset + pi): ``inverse``
    does not wrap, so these are the points that ``forward`` and ``inverse`` reproduce exactly."""
    return layer.inverse(layer.forward(ic().forward(frames(seed))[0])[0])[0]


#: Splines invert by solving a quadratic, which loses about three digits where a bin is steep:
#: their round trip and ladj sum are held to 1e-9.
SPLINE = 1e-9

CASES = {
    "harmonic-pair": Case(
        HarmonicPairTransform, lambda: HarmonicPairTransform(k=2.0, length=3.0),
        lambda layer, seed: HarmonicPairInBox(k=2.0, length=3.0).sample(7, torch.Generator().manual_seed(seed)),
    ),
    "nice": Case(AdditiveCoupling, lambda: AdditiveCoupling(half_mask(DIM), hidden=(16, 16))),
    "nice-custom-mask": Case(AdditiveCoupling, lambda: AdditiveCoupling(torch.tensor([True, False, True, False, False]), hidden=(8,))),
    "nicer": Case(NICERBlock, lambda: NICERBlock(DIM, hidden=(16,))),
    "scaling": Case(Scaling, lambda: Scaling(DIM)),
    "exp-scaling": Case(ExpScaling, lambda: ExpScaling(DIM)),
    "realnvp-coupling": Case(AffineCoupling, lambda: AffineCoupling(half_mask(DIM, first=False), hidden=(16, 16), activation="tanh")),
    "realnvp-block": Case(RealNVPBlock, lambda: RealNVPBlock(DIM, hidden=(16,))),
    "swap": Case(SwapHalves, lambda: SwapHalves(DIM)),
    "permutation": Case(Permutation, lambda: Permutation.random(DIM, torch.Generator().manual_seed(3))),
    "whitening": Case(Whitening, lambda: Whitening.fit(torch.randn(50, DIM, generator=torch.Generator().manual_seed(4), dtype=torch.float64) @ torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(5), dtype=torch.float64))),
    "flatten": Case(Flatten, lambda: Flatten((2, 3)), lambda layer, seed: torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)),
    "inverse": Case(Inverse, lambda: Inverse(RealNVPBlock(DIM, hidden=(8,)))),
    "real_nvp": Case(Sequential, lambda: flows.real_nvp(DIM, n_blocks=2, hidden=(16,), permute=True)),
    "nicer-net": Case(Sequential, lambda: flows.nicer(DIM, n_blocks=2, hidden=(16,))),
    # bound 1.5 puts some of the N(0, 1) test points on the identity tails
    "spline-coupling": Case(SplineCoupling, lambda: SplineCoupling(half_mask(DIM), hidden=(16,), n_bins=6, bound=1.5), tolerance=SPLINE, ladj_sum=SPLINE),
    "neural_spline": Case(
        Sequential, lambda: flows.neural_spline(DIM, n_blocks=2, hidden=(16,), n_bins=4, bound=2.0, permute=True), tolerance=SPLINE, ladj_sum=SPLINE
    ),
    "circular-spline-coupling": Case(
        CircularSplineCoupling, lambda: CircularSplineCoupling(half_mask(DIM), CIRCLES, hidden=(16,), n_bins=5, bound=1.5), on_circles, tolerance=SPLINE, ladj_sum=SPLINE
    ),
    "circular-spline-coupling-all-circular": Case(
        CircularSplineCoupling, lambda: CircularSplineCoupling(half_mask(DIM, first=False), torch.ones(DIM, dtype=torch.bool), hidden=(8,), n_bins=3),
        lambda layer, seed: torch.rand(7, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.98 - 0.99,
        tolerance=SPLINE, ladj_sum=SPLINE,
    ),
    # four couplings of steep random splines, each inverse a quadratic solve: the round trip holds to 1e-9 relative
    "circular_spline": Case(
        Sequential, lambda: flows.circular_spline(DIM, CIRCLES, n_blocks=2, hidden=(16,), n_bins=4, bound=2.0, seed=3), on_circles,
        tolerance=1e-8, ladj_sum=1e-8, log_det=1e-8,
    ),
    "composition": Case(
        Sequential,
        lambda: Sequential(Scaling(DIM), NICERBlock(DIM, hidden=(8,)), SwapHalves(DIM), AffineCoupling(half_mask(DIM), hidden=(8,)), ExpScaling(DIM)),
    ),
    "circular-to-real": Case(
        CircularToReal,
        lambda: CircularToReal(torch.tensor([True, False, True, False, True])),
        lambda layer, seed: torch.rand(7, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.98 - 0.99,
    ),
    "internal-coordinates": Case(InternalCoordinateTransform, ic, lambda layer, seed: frames(seed)),
    "internal-coordinates-no-rigid-body": Case(
        InternalCoordinateTransform, lambda: ic(remove_rigid_body=True), canonical_frames, volume=rigid_body_volume
    ),
    "internal-coordinates-constrained": Case(
        InternalCoordinateTransform, constrained_ic, canonical_frames, volume=constrained_volume
    ),
    "normalization": Case(InternalCoordinateNormalization, normalization, normalized_frames),
    "guarded-coordinates": Case(GuardedCoordinates, guarded, lambda layer, seed: frames(seed)),
    # a 66 x 66 Jacobian whose latents reach |z| ~ 90 and ladj ~ 300: slogdet agrees to about 5e-10
    "molecular-flow": Case(Sequential, molecular_flow, lambda layer, seed: frames(seed, n=2), log_det=1e-8),
    # 60 inputs per conditioner: weights of scale 0.5 give raw spline parameters of O(10), bins at
    # their minimum size and slopes of 1e3, and the second coupling's 1e-9 inversion error comes back
    # through the first's conditioner amplified to 1e-3; at 0.1 the splines are still far from the identity
    "molecular-flow-circular": Case(
        Sequential, circular_molecular_flow, lambda layer, seed: frames(seed, n=2), tolerance=SPLINE, ladj_sum=SPLINE, log_det=1e-8, weight_scale=0.1
    ),
}


def make(name: str) -> Bijection:
    """The layer of case ``name`` in float64, with randomised parameters of O(0.5)."""
    torch.manual_seed(0)
    layer = CASES[name].build().double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            # Scales and log-scales of O(0.5): far from the identity, still well conditioned.
            offset = 1.0 if p.ndim == 1 and isinstance(layer, Scaling) else 0.0
            p.copy_(CASES[name].weight_scale * torch.randn(p.shape, generator=g, dtype=p.dtype) + offset)
    return layer


def case_points(name: str, layer: Bijection, seed: int = 1) -> torch.Tensor:
    return CASES[name].points(layer, seed).to(torch.float64)


def autograd_log_det(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """``log |det d fn(x)/dx|`` per sample of ``x`` (batch, *shape), from the autograd Jacobian."""
    out = []
    for xi in x:
        J = jacobian(lambda v: fn(v.reshape(1, *x.shape[1:]))[0].reshape(-1), xi.reshape(-1), vectorize=True)
        assert J.shape[0] == J.shape[1], f"the Jacobian has shape {tuple(J.shape)}: give the case a volume form"
        out.append(torch.linalg.slogdet(J)[1])
    return torch.stack(out)


def _bijection_classes() -> set[type]:
    """Every concrete Bijection class defined in the package (all of its modules imported first)."""
    for module in pkgutil.walk_packages(openmm_bg.__path__, "openmm_bg."):
        importlib.import_module(module.name)
    found, todo = set(), [Bijection]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("openmm_bg.") and not inspect.isabstract(sub):
                found.add(sub)
    return found


# ----------------------------------------------------------------------------- the contract


def test_every_bijection_has_a_contract_case():
    covered = {case.cls for case in CASES.values()}
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in _bijection_classes() - covered)
    assert not missing, f"Bijection classes without a case in CASES of tests/test_contract.py: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip(name):
    layer = make(name)
    assert type(layer) is CASES[name].cls
    x = case_points(name, layer)
    z, _ = layer.forward(x)
    assert z.dtype == torch.float64 and z.shape[0] == x.shape[0]
    tol = CASES[name].tolerance
    x_back, _ = layer.inverse(z)
    assert x_back.shape == x.shape and torch.allclose(x_back, x, atol=tol, rtol=0)
    z_back, _ = layer.forward(x_back)
    assert torch.allclose(z_back, z, atol=tol, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ladj_matches_autograd_both_directions(name):
    layer = make(name)
    x = case_points(name, layer)
    z, ladj_xz = layer.forward(x)
    _, ladj_zx = layer.inverse(z)
    assert ladj_xz.shape == (x.shape[0],) and ladj_zx.shape == (x.shape[0],)
    assert torch.allclose(ladj_xz + ladj_zx, torch.zeros_like(ladj_xz), atol=CASES[name].ladj_sum, rtol=0)
    volume, tol = CASES[name].volume, CASES[name].log_det
    if volume is None:
        assert torch.allclose(ladj_xz, autograd_log_det(layer.forward, x), atol=tol, rtol=0)
        assert torch.allclose(ladj_zx, autograd_log_det(layer.inverse, z), atol=tol, rtol=0)
    else:
        assert torch.allclose(ladj_zx, volume(layer, z), atol=tol, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_parameter_gets_a_gradient(name):
    layer = make(name)
    x = case_points(name, layer).requires_grad_()
    z, ladj = layer.forward(x)
    # a latent point that is not z itself: inverse(forward(x)) is x whatever the parameters
    x_back, ladj_back = layer.inverse(layer.forward(case_points(name, layer, seed=2))[0].detach())
    (z.square().sum() + ladj.sum() + x_back.square().sum() + ladj_back.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_round_trip(name):
    layer = make(name)
    x = case_points(name, layer)
    z = layer.forward(x)[0].detach()
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    fresh = make(name)
    with torch.no_grad():
        for value in fresh.state_dict().values():
            if value.is_floating_point():
                value.fill_(0.25)
    state = io.BytesIO()
    torch.save(layer.state_dict(), state)
    state.seek(0)
    fresh.load_state_dict(torch.load(state, weights_only=True))
    for other in (loaded, fresh):
        for a, b in zip(layer.forward(x) + layer.inverse(z), other.forward(x) + other.inverse(z)):
            assert torch.equal(a, b)

