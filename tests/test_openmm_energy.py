"""OpenMMEnergy in-process: exactness against a direct Context, gradients, failures, toy systems."""

import numpy as np
import openmm
import pytest
import torch
from openmm import unit
from openmmtools import integrators, testsystems

from openmm_bg.energies import (
    DoubleWell,
    MuellerBrown,
    OpenMMEnergy,
    choose_platform,
    double_well_system,
    mueller_brown_system,
    reduced_energies,
)

RTOL = 1e-6  # the bound for float64 agreement with a direct Context


def kt_reference(temperature_k):
    # independent of openmm_bg.units: k_B N_A T, as openmmtools' ThermodynamicState does it
    return (unit.BOLTZMANN_CONSTANT_kB * unit.AVOGADRO_CONSTANT_NA * temperature_k * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)


def direct_energies_forces(system, positions, platform):
    """Energies (kJ/mol) and forces (kJ/mol/nm) from a plain Context.getState loop."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    energies, forces = [], []
    for x in positions:
        context.setPositions(x * unit.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(energies), np.array(forces)


def perturbed(testsystem, n, sigma, seed):
    x0 = np.asarray(testsystem.positions.value_in_unit(unit.nanometer))
    return x0 + sigma * np.random.default_rng(seed).standard_normal((n,) + x0.shape)


@pytest.fixture(scope="module")
def vacuum():
    return testsystems.AlanineDipeptideVacuum(constraints=None)


@pytest.fixture(scope="module")
def implicit():
    return testsystems.AlanineDipeptideImplicit(constraints=None)


@pytest.fixture(scope="module")
def dimer():
    """The dimer in a WCA bath, relaxed so that forces are moderate rather than overlap-sized."""
    t = testsystems.DoubleWellDimer_WCAFluid()
    context = openmm.Context(t.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(t.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 100)
    t.positions = context.getState(getPositions=True).getPositions(asNumpy=True)
    return t


@pytest.mark.parametrize("name, platform", [("vacuum", "Reference"), ("implicit", "CPU"), ("dimer", "CPU"), ("dimer", "Reference")])
def test_matches_direct_context(name, platform, request):
    t = request.getfixturevalue(name)
    x = perturbed(t, 6, 0.003, seed=1)
    energy = OpenMMEnergy(t.system, 300.0, platform=platform)
    result = energy.evaluate(x)
    e_ref, f_ref = direct_energies_forces(t.system, x, platform)
    kt = kt_reference(300.0)
    assert result.finite.all()
    np.testing.assert_allclose(result.u, e_ref / kt, rtol=RTOL, atol=0)
    assert np.abs(result.forces - f_ref / kt).max() <= RTOL * np.abs(f_ref / kt).max()
    # the autograd path returns the same energies and -F/kT as the gradient
    xt = torch.tensor(x, requires_grad=True)
    u = energy(xt)
    u.sum().backward()
    np.testing.assert_allclose(u.detach().numpy(), e_ref / kt, rtol=RTOL, atol=0)
    assert np.abs(xt.grad.numpy() + f_ref / kt).max() <= RTOL * np.abs(f_ref / kt).max()


def test_gradcheck(vacuum):
    energy = OpenMMEnergy(vacuum.system, 300.0, platform="Reference")
    x = torch.tensor(perturbed(vacuum, 2, 0.003, seed=2), requires_grad=True)
    assert torch.autograd.gradcheck(energy, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_dtype_shape_and_temperature(vacuum):
    energy = OpenMMEnergy(vacuum.system, 300.0 * unit.kelvin)
    x64 = torch.tensor(perturbed(vacuum, 3, 0.003, seed=3))
    u64 = energy(x64)
    # flat (batch, 3 n_atoms) input gives the same result
    assert torch.equal(energy(x64.reshape(3, -1)), u64)
    x32 = x64.float().requires_grad_(True)
    u32 = energy(x32)
    u32.sum().backward()
    assert u32.dtype == torch.float32 and x32.grad.dtype == torch.float32 and u32.shape == (3,)
    # float32 input differs from float64 only by the rounding of positions (1e-7 nm) and of u
    torch.testing.assert_close(u32.double(), u64, rtol=1e-4, atol=1e-3)
    # temperature scales u as 1/T: a float in kelvin and a Quantity agree
    hot = OpenMMEnergy(vacuum.system, 600.0)
    torch.testing.assert_close(hot(x64) * 2, u64, rtol=1e-12, atol=0)
    # numpy helpers agree with the torch path
    np.testing.assert_array_equal(energy.reduced_energy(x64.numpy()), u64.numpy())
    # one configuration is a batch of one: always shape (n_frames,)
    np.testing.assert_array_equal(reduced_energies(vacuum.system, 300.0, x64.numpy()[0], platform="Reference"), u64.numpy()[:1])
    np.testing.assert_array_equal(reduced_energies(vacuum.system, 300.0, x64.numpy(), platform="Reference"), u64.numpy())


def test_nan_positions_are_flagged_and_get_zero_gradient(vacuum):
    energy = OpenMMEnergy(vacuum.system, 300.0)
    x = perturbed(vacuum, 4, 0.003, seed=4)
    x[1, 5, 2] = np.nan
    x[3, 0, 0] = np.inf
    result = energy.evaluate(x)
    np.testing.assert_array_equal(result.finite, [True, False, True, False])
    assert np.all(result.u[[1, 3]] == np.inf)
    assert np.isnan(result.forces[[1, 3]]).all() and np.isfinite(result.forces[[0, 2]]).all()
    xt = torch.tensor(x, requires_grad=True)
    u = energy(xt)
    assert torch.equal(torch.isinf(u), torch.tensor([False, True, False, True]))
    u[torch.isfinite(u)].sum().backward()
    assert torch.all(xt.grad[[1, 3]] == 0)
    ok = energy.evaluate(x[[0, 2]])
    np.testing.assert_array_equal(xt.grad[[0, 2]].numpy(), -ok.forces)


def test_nonfinite_energy_from_openmm_is_flagged():
    # two Lennard-Jones particles on top of each other: OpenMM returns a non-finite energy
    system = openmm.System()
    force = openmm.NonbondedForce()
    for _ in range(2):
        system.addParticle(1.0)
        force.addParticle(0.0, 0.3, 1.0)
    system.addForce(force)
    energy = OpenMMEnergy(system, 300.0, platform="Reference")
    x = np.array([[[0, 0, 0], [0.4, 0, 0]], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]], dtype=float)
    result = energy.evaluate(x)
    np.testing.assert_array_equal(result.finite, [True, False])
    assert np.isfinite(result.u[0]) and result.u[1] == np.inf


def test_periodic_box_vectors_are_used(dimer):
    energy = OpenMMEnergy(dimer.system, 300.0, platform="Reference")
    x = perturbed(dimer, 1, 0.003, seed=5)[0]
    box = np.array([v.value_in_unit(unit.nanometer) for v in dimer.system.getDefaultPeriodicBoxVectors()])
    shifted = x.copy()
    # the bonded dimer (particles 0 and 1; its bond is not periodic) and one solvent
    # particle move to other periodic images: the periodic nonbonded energy must not change
    shifted[[0, 1]] += box[0] - 2 * box[2]
    shifted[7] += box[1]
    u = energy.reduced_energy(np.stack([x, shifted]))
    np.testing.assert_allclose(u[1], u[0], rtol=1e-9)
    # particle 7 placed 0.28 nm from particle 8 through the x face of the box: only the
    # minimum image in the System's box makes them overlap (WCA sigma is 0.34 nm), which
    # alone costs 4 (1.214^12 - 1.214^6) + 1 = 29 kJ/mol = 11.6 kT
    contact = x.copy()
    contact[7] = contact[8] + box[0] - np.array([0.28, 0.0, 0.0])
    u_contact = energy.reduced_energy(contact[None])
    e_ref, _ = direct_energies_forces(dimer.system, contact[None], "Reference")
    np.testing.assert_allclose(u_contact, e_ref / kt_reference(300.0), rtol=RTOL)
    assert u_contact[0] > u[0] + 5.0
    # an explicit box overrides the System's (which stays untouched): the contact is gone in a box 0.1 nm wider
    same = reduced_energies(dimer.system, 300.0, contact, platform="Reference", box_vectors=box)
    wider = reduced_energies(dimer.system, 300.0, contact, platform="Reference", box_vectors=box + 0.1 * np.eye(3))
    np.testing.assert_array_equal(same, u_contact)
    assert wider.shape == (1,) and wider[0] < u_contact[0] - 5.0
    assert np.allclose([v.value_in_unit(unit.nanometer) for v in dimer.system.getDefaultPeriodicBoxVectors()], box)


def test_platform_choice(vacuum, implicit, dimer):
    assert choose_platform(vacuum.system) == "Reference"
    assert choose_platform(implicit.system) == "CPU"
    assert choose_platform(dimer.system) == "CPU"
    assert OpenMMEnergy(vacuum.system, 300.0, platform="CPU", platform_properties={"Threads": 1}).platform == "CPU"


def test_bad_inputs_raise_clear_errors(vacuum):
    with pytest.raises(TypeError, match="openmm.System"):
        OpenMMEnergy("not a system", 300.0)
    with pytest.raises(ValueError, match="positive"):
        OpenMMEnergy(vacuum.system, -1.0)
    with pytest.raises(TypeError, match="kelvin"):
        OpenMMEnergy(vacuum.system, 1.0 * unit.nanometer)
    with pytest.raises(ValueError, match="platform must be one of"):
        OpenMMEnergy(vacuum.system, 300.0, platform="Quantum")
    with pytest.raises(ValueError, match="n_workers"):
        OpenMMEnergy(vacuum.system, 300.0, n_workers=-1)
    with pytest.raises(ValueError, match="executor= needs n_workers"):
        OpenMMEnergy(vacuum.system, 300.0, executor=object())
    with pytest.raises(ValueError, match="timeout"):
        OpenMMEnergy(vacuum.system, 300.0, timeout=0)
    energy = OpenMMEnergy(vacuum.system, 300.0)
    with pytest.raises(ValueError, match=r"\(batch, 22, 3\)"):
        energy(torch.zeros(2, 21, 3))
    with pytest.raises(ValueError, match=r"\(batch, 22, 3\)"):
        energy.evaluate(np.zeros((22, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        energy(torch.zeros(2, 22, 3, dtype=torch.float16))
    with pytest.raises(TypeError, match="floating-point"):
        energy.evaluate(torch.zeros(2, 22, 3, dtype=torch.int64))
    constrained = testsystems.AlanineDipeptideVacuum()  # HBond constraints by default
    with pytest.warns(UserWarning, match="constraints"):
        OpenMMEnergy(constrained.system, 300.0)


def _grid_xy(energy):
    if isinstance(energy, MuellerBrown):
        xs, ys = np.meshgrid(np.linspace(-1.5, 1.2, 9), np.linspace(-0.5, 2.0, 9))
    else:
        xs, ys = np.meshgrid(np.linspace(-2.5, 2.5, 9), np.linspace(-3.0, 3.0, 9))
    return torch.tensor(np.stack([xs.ravel(), ys.ravel()], axis=1))


@pytest.mark.parametrize(
    "toy, build",
    [
        (DoubleWell(), double_well_system),
        (DoubleWell.shallow(), double_well_system),
        (MuellerBrown(), mueller_brown_system),
        (MuellerBrown(beta=0.3), mueller_brown_system),
    ],
)
@pytest.mark.parametrize("temperature", [300.0, 450.0])
def test_toy_systems_equal_analytic_energies(toy, build, temperature):
    system = build(toy, temperature=temperature)
    energy = OpenMMEnergy(system, temperature)
    xy = _grid_xy(toy).requires_grad_(True)
    u_ref = toy(xy)
    (grad_ref,) = torch.autograd.grad(u_ref.sum(), xy)
    x3 = torch.cat([xy.detach(), torch.zeros(len(xy), 1, dtype=xy.dtype)], dim=1)[:, None, :]
    result = energy.evaluate(x3)
    u_ref = u_ref.detach().numpy()
    np.testing.assert_allclose(result.u, u_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(-result.forces[:, 0, :2], grad_ref.numpy(), rtol=1e-6, atol=1e-6 * np.abs(grad_ref.numpy()).max())
    np.testing.assert_allclose(result.forces[:, 0, 2], 0.0, atol=1e-12)
    # the z term is a unit harmonic in reduced units: u(x, y, z) = u(x, y) + z^2 / 2
    x3[:, 0, 2] = 0.7
    np.testing.assert_allclose(energy.evaluate(x3).u, u_ref + 0.245, rtol=1e-6, atol=1e-6)


def test_toy_systems_run_under_openmmtools_integrators():
    for system, prefix in [(double_well_system(), "dw_"), (mueller_brown_system(), "mb_")]:
        force = system.getForce(0)
        names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]
        assert names and all(name.startswith(prefix) for name in names)
        # openmmtools' Langevin integrator defines globals named a, b and kT; a clash would raise here
        integrator = integrators.LangevinIntegrator(temperature=300 * unit.kelvin, timestep=0.01 * unit.picosecond)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions([[-0.5, 1.4, 0.0]])
        context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        integrator.step(20)
        assert np.isfinite(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    with pytest.raises(ValueError, match="mass"):
        double_well_system(mass=0.0)
    with pytest.raises(TypeError, match="DoubleWell"):
        double_well_system(MuellerBrown())


def test_pickle_and_deepcopy_rebuild_the_same_energy(vacuum):
    import copy
    import pickle

    energy = OpenMMEnergy(vacuum.system, 310.0, platform="Reference")
    x = perturbed(vacuum, 3, 0.003, seed=6)
    expected = energy.evaluate(x)
    for clone in (pickle.loads(pickle.dumps(energy)), copy.deepcopy(energy)):
        assert clone is not energy and clone.temperature == 310.0 and clone.platform == "Reference"
        np.testing.assert_array_equal(clone.evaluate(x).u, expected.u)
    # positions as an openmm Quantity (e.g. from a SamplerState) are converted at the edge
    np.testing.assert_allclose(energy.evaluate(x[0:1] * 10.0 * unit.angstrom).u, expected.u[0:1], rtol=1e-12)


def test_unknown_platform_property_is_rejected(vacuum):
    with pytest.raises(ValueError, match="Threads"):
        OpenMMEnergy(vacuum.system, 300.0, platform="CPU", platform_properties={"Thredas": "1"})
