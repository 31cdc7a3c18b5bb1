"""Shared test fixtures: the sigma cut of the statistical tests, and a generator that is exact for a Gaussian target."""

import math

import torch

from openmm_bg.generator.prior import NormalPrior
from openmm_bg.flows import Scaling
from openmm_bg.generator.model import BoltzmannGenerator

__all__ = ["NSIGMA", "gaussian_generator", "gaussian_log_partition"]

#: The one cut of every statistical test that compares an estimate with a reference:
#: ``abs(estimate - reference) < NSIGMA * standard_error``.
#:
#: For an unbiased estimate with Gaussian error and an exact standard error, a
#: comparison fails falsely with probability ``erfc(4 / sqrt(2)) = 6.3e-5``; with a
#: block or bootstrap error from 20 blocks (Student t, 19 degrees of freedom) it is
#: 7.7e-4.  The suite makes about 50 such comparisons, so a change of seeds trips one
#: in roughly 300 (Gaussian) to 25 (20 blocks) runs, while a bias of 4 standard
#: errors is still caught.  A cut of 3 would fail 2.7e-3 per comparison (one run in
#: seven); 5 would let biases of 5 standard errors through.  Every stochastic test
#: draws from a fixed seed, so a run is reproducible and a failure is not noise
#: that goes away on a rerun.
NSIGMA = 4.0


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
