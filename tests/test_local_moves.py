"""Local generator moves: the fragment's coordinates, the rule for what may move, and exactness.

Exactness is checked against quadrature: with every atom but one fixed, the exact
conditional distribution of that atom's bond, angle and torsion is a 3-D integral,
``p(q) ~ exp(-u(x(q))) r^2 sin(theta)``, done on a grid with OpenMM energies.  The test
runs at 3000 K, where the distribution is wide enough that dropping the Jacobian
``r^2 sin(theta)`` from the move would shift the mean bond by about 6 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from openmmtools import cache, states
from pymbar import timeseries

from openmm_bg.coordinates.local import LocalInternalCoordinates, local_rows, select_atoms
from openmm_bg.molecules import get_system, load_bundled_trajectory
from openmm_bg.moves import BoltzmannGeneratorMove, LocalGeneratorMove, local_generator_from_data
from openmm_bg.units import kt_kjmol

from helpers import NSIGMA

HOT = 3000.0  # K
H_ATOM = 17  # NME3-H, on the amide nitrogen


@pytest.fixture(scope="module")
def ala2():
    return get_system("ala2-vacuum")


@pytest.fixture(scope="module")
def frames():
    return load_bundled_trajectory("ala2-vacuum", stride=50).astype(np.float64)


def test_place_inverts_forward_and_its_log_jacobian_matches_autograd(ala2, frames):
    """float64: x -> q -> x round trip, and log|det dx_S/dq| against torch.autograd for the NME group (18 coordinates)."""
    rows = local_rows(ala2.topology, select_atoms(ala2.topology, "resname NME"))
    local = LocalInternalCoordinates(rows, ala2.n_atoms).double()
    x = torch.as_tensor(frames[:4])
    q, ladj_forward = local(x)
    back, ladj_inverse = local.place(q, x)
    assert torch.allclose(back, x, atol=1e-12)
    assert torch.allclose(ladj_forward, -ladj_inverse, atol=1e-12)
    moved = local.moved
    for k in range(2):
        jac = torch.autograd.functional.jacobian(lambda qq: local.place(qq[None], x[k])[0][0, moved].reshape(-1), q[k])
        assert torch.allclose(torch.linalg.slogdet(jac)[1], ladj_inverse[k], atol=1e-9)


@pytest.mark.parametrize(
    "selection, message",
    [
        ("resname XYZ", "matches no atoms"),
        ("resname ALA and (name C or name O)", "cuts a ring or the middle of a chain"),
        ("resname ALA", "fix the molecule's frame"),
        ([200], r"atom indices must be integers in \[0, 22\)"),
        ("name CA and", "cannot parse"),
    ],
)
def test_selections_that_cannot_move_locally_are_clear_errors(ala2, frames, selection, message):
    with pytest.raises(ValueError, match=message):
        local_generator_from_data(ala2.topology, frames, selection)


def test_a_ring_cut_is_an_error():
    """Half of a phenyl ring (toluene-like: a ring atom bonded to two fixed atoms) cannot move."""
    import mdtraj as md

    top = md.Topology()
    chain = top.add_chain()
    residue = top.add_residue("RNG", chain)
    atoms = [top.add_atom(f"C{i}", md.element.carbon, residue) for i in range(7)]
    for i in range(6):
        top.add_bond(atoms[i], atoms[(i + 1) % 6])
    top.add_bond(atoms[0], atoms[6])
    with pytest.raises(ValueError, match="cuts a ring"):
        local_rows(top, [3, 4])


def test_a_constrained_bond_in_the_fragment_is_an_error(ala2, frames):
    import openmm.app as app

    system = app.ForceField("amber96.xml").createSystem(ala2.openmm_topology, constraints=app.HBonds)
    with pytest.raises(ValueError, match="constrained bond"):
        local_generator_from_data(ala2.topology, frames, "resname NME", system=system)


def test_move_refuses_a_whole_molecule_generator_and_a_generator_of_another_molecule(ala2, frames):
    from openmm_bg.generator.recipes import molecular_generator_from_data

    whole, _ = molecular_generator_from_data(ala2.topology, frames, n_blocks=1, hidden=[8])
    with pytest.raises(ValueError, match="needs a local generator"):
        LocalGeneratorMove(whole)
    local, _, _ = local_generator_from_data(ala2.topology, frames, [H_ATOM], coupling="affine", n_blocks=1, hidden=[8])
    with pytest.raises(ValueError):
        BoltzmannGeneratorMove(local)
    # a System of another size: refused before any step runs
    other = openmm.System()
    for _ in range(5):
        other.addParticle(1.0)
    move = LocalGeneratorMove(local, seed=0)
    sampler = states.SamplerState(np.zeros((5, 3)) * unit.nanometer)
    with pytest.raises(ValueError, match="22 particles, the System has 5"):
        move.apply(states.ThermodynamicState(other, 300 * unit.kelvin), sampler, cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference")))
    assert move.statistics["n_proposed"] == 0


def test_move_refuses_a_generator_of_another_molecule_with_as_many_atoms(ala2, frames):
    """Same particle count, hydrogens elsewhere: refused before any step, the state untouched."""
    local, _, _ = local_generator_from_data(ala2.topology, frames, [H_ATOM], coupling="affine", n_blocks=1, hidden=[8])
    other = openmm.System()
    for i in range(ala2.n_atoms):
        other.addParticle(12.0 if i == H_ATOM else 1.008)
    move = LocalGeneratorMove(local, seed=0)
    sampler = states.SamplerState(frames[0] * unit.nanometer)
    before = sampler.positions.copy()
    with pytest.raises(ValueError, match="built for another molecule: atom 17 is a hydrogen"):
        move.apply(states.ThermodynamicState(other, 300 * unit.kelvin), sampler, cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference")))
    assert move.statistics["n_proposed"] == 0 and np.array_equal(sampler.positions, before)


def test_hydrogen_mass_repartitioning_passes_the_molecule_check(ala2, frames):
    """Hydrogens at 4 Da leave the ACE methyl carbon (in the rows of its hydrogen) at about
    3 Da: still the same molecule.  A heavy atom of the rows where the System has an
    ordinary hydrogen is not."""
    from openmm_bg.simulation.langevin import repartition_hydrogen_mass

    local, _, _ = local_generator_from_data(ala2.topology, frames, [0], coupling="affine", n_blocks=1, hidden=[8])
    rows = local.local_coordinates.rows
    hmr = repartition_hydrogen_mass(ala2.system, ala2.openmm_topology, 4.0)
    carbon = int(rows[0, 1])
    assert hmr.getParticleMass(carbon).value_in_unit(unit.dalton) < 3.1
    local.local_coordinates.check_system(hmr)
    hmr.setParticleMass(carbon, 1.008)
    with pytest.raises(ValueError, match=f"atom {carbon} is a heavy atom in its rows, but has 1.008 Da"):
        local.local_coordinates.check_system(hmr)


def _conditional_by_quadrature(ala2, local, x0):
    """Exact means of r, theta, cos(phi), sin(phi) of the moved atom given the rest, at HOT."""
    context = openmm.Context(ala2.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    kt = kt_kjmol(HOT * unit.kelvin)
    (r0, theta0, phi0), = local(torch.as_tensor(x0)[None])[0].tolist()
    grid = np.stack(np.meshgrid(np.linspace(r0 - 0.04, r0 + 0.05, 31), np.linspace(theta0 - 0.9, min(theta0 + 0.9, math.pi), 41),
                                np.linspace(phi0 - math.pi, phi0 + math.pi, 61, endpoint=False), indexing="ij"), -1).reshape(-1, 3)
    positions, _ = local.place(torch.as_tensor(grid), torch.as_tensor(x0))
    u = np.empty(len(grid))
    for i, x in enumerate(positions.numpy()):
        context.setPositions(x)
        u[i] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / kt
    log_w = -u + 2 * np.log(grid[:, 0]) + np.log(np.sin(grid[:, 1]))
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    return {"r": w @ grid[:, 0], "theta": w @ grid[:, 1], "cos phi": w @ np.cos(grid[:, 2]), "sin phi": w @ np.sin(grid[:, 2])}


def _check_local_move_samples_the_conditional(ala2, frames, n_applies, seed):
    generator, _, _ = local_generator_from_data(ala2.topology, frames, [H_ATOM], coupling="affine", n_blocks=1, hidden=[16])
    with torch.no_grad():
        generator.flow[0].std.mul_(3.0)  # the normalisation was fitted at 300 K; widen it for 3000 K
    local = generator.local_coordinates
    x0 = frames[0]
    exact = _conditional_by_quadrature(ala2, local, x0)
    thermo = states.ThermodynamicState(ala2.system, HOT * unit.kelvin)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"))
    move = LocalGeneratorMove(generator, n_proposals=50, seed=seed)
    sampler = states.SamplerState(x0 * unit.nanometer)
    q = []
    for _ in range(n_applies):
        move.apply(thermo, sampler, context_cache)
        x = np.asarray(sampler.positions.value_in_unit(unit.nanometer))
        q.append(local(torch.as_tensor(x)[None])[0][0].numpy())
    # the fixed atoms never moved
    fixed = np.setdiff1d(np.arange(ala2.n_atoms), [H_ATOM])
    assert np.array_equal(x[fixed], x0[fixed])
    assert 0.1 < move.acceptance_rate < 0.9
    q = np.array(q)
    for name, series in (("r", q[:, 0]), ("theta", q[:, 1]), ("cos phi", np.cos(q[:, 2])), ("sin phi", np.sin(q[:, 2]))):
        error = series.std() * math.sqrt(timeseries.statistical_inefficiency(series) / len(series))
        assert abs(series.mean() - exact[name]) < NSIGMA * error, (name, series.mean(), exact[name], error)


def test_local_move_samples_the_exact_conditional_distribution(ala2, frames):
    """300 applications of 50 proposals: the moved atom's coordinates against quadrature (NSIGMA cut)."""
    _check_local_move_samples_the_conditional(ala2, frames, n_applies=300, seed=5)


@pytest.mark.slow
def test_local_move_samples_the_exact_conditional_distribution_long(ala2, frames):
    """1500 applications: enough that a move without the Jacobian fails the mean bond by about 6 errors."""
    _check_local_move_samples_the_conditional(ala2, frames, n_applies=1500, seed=6)


def test_checkpoint_round_trip_and_yaml_safe_state(ala2, frames, tmp_path):
    """save_generator -> LocalGeneratorMove(path): same density; __getstate__/__setstate__ keep the fragment."""
    import yaml

    from openmm_bg.generator import save_generator
    from openmm_bg.moves import clear_generator_cache
    from openmm_bg.moves.local import BUILDER

    generator, kwargs, q = local_generator_from_data(ala2.topology, frames, "resname NME", coupling="affine", n_blocks=1, hidden=[8])
    path = save_generator(generator, tmp_path / "nme.pt", BUILDER, kwargs)
    clear_generator_cache()
    move = LocalGeneratorMove(path, n_proposals=3, seed=1)
    with torch.no_grad():
        assert torch.allclose(move.generator.log_prob(q[:5]), generator.log_prob(q[:5]))
    state = yaml.safe_load(yaml.safe_dump(move.__getstate__()))
    clone = LocalGeneratorMove.__new__(LocalGeneratorMove)
    clone.__setstate__(state)
    assert clone.n_proposals == 3 and np.array_equal(clone.moved_atoms, move.moved_atoms)
