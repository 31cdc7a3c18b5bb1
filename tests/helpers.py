"""Shared test fixtures: a generator that is exact for a Gaussian target."""

import math

import torch

from openmm_bg.distributions import NormalPrior
from openmm_bg.flows import Scaling
from openmm_bg.generator import BoltzmannGenerator

__all__ = ["gaussian_generator", "gaussian_log_partition"]


def gaussian_generator(dim=3, target_std=2.0, flow_std=None):
    """Target ``u = |x|^2 / (2 target_std^2)``; flow ``x = flow_std * z``.

    With ``flow_std == target_std`` the generator density equals the Boltzmann density.
    """
    flow_std = target_std if flow_std is None else flow_std
    flow = Scaling(dim).double()
    with torch.no_grad():
        flow.s.fill_(1.0 / flow_std)
    energy = lambda x: 0.5 * (x * x).sum(dim=1) / target_std**2
    return BoltzmannGenerator(NormalPrior(dim), flow, energy, event_shape=(dim,))


def gaussian_log_partition(dim=3, target_std=2.0, temperature=1.0):
    """``log Z = log int exp(-u/tau) dx`` of the Gaussian target above."""
    return 0.5 * dim * math.log(2 * math.pi * target_std**2 * temperature)
