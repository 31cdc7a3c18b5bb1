"""Temperature-annealed training by energy alone, on the double well whose answer is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openmm_bg.analysis.reweighting import kish_ess
from openmm_bg.energies import DoubleWell
from openmm_bg.flows import neural_spline
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.generator.prior import NormalPrior
from openmm_bg.training import annealing
from openmm_bg.training.annealing import AnnealingSettings, anneal

from helpers import NSIGMA  # the shared sigma cut of the statistical tests

SETTINGS = dict(temperatures=[4.0, 2.0, 1.4, 1.0], kl_iterations=250, kl_batch_size=256, n_samples=4000, ml_iterations=150, batch_size=256, seed=3)


def double_well_generator() -> BoltzmannGenerator:
    torch.manual_seed(0)
    return BoltzmannGenerator(NormalPrior(2), neural_spline(2, n_blocks=3, hidden=(32, 32), n_bins=8, bound=4.0), DoubleWell()).double()


def exact_delta_f(well: DoubleWell) -> float:
    """F(x1 > 0) - F(x1 < 0) by quadrature of the x1 marginal (the x2 integral factorises out)."""
    x1 = np.linspace(-4.0, 4.0, 400_001)
    p = np.exp(-well._u1(x1))
    return float(-np.log(p[x1 > 0].sum() / p[x1 < 0].sum()))


def test_annealing_from_a_hot_target_finds_both_wells_with_the_right_weights():
    """Energy only, no data: reverse KL at 4 kT then three reweighted rungs down to 1.  The
    final generator's importance-weighted dF matches quadrature within NSIGMA bootstrap errors,
    its samples visit the minor well (about 3 % of the mass), and every evaluation is counted."""
    generator = double_well_generator()
    result = anneal(generator, AnnealingSettings(**SETTINGS))
    assert [p["kind"] for p in result.phases] == ["kl", "rung", "rung", "rung"]
    assert result.energy_evaluations == sum(p["energy_evaluations"] for p in result.phases)
    assert result.phases[0]["energy_evaluations"] >= 250 * 256
    sample = generator.sample(40_000, generator=torch.Generator().manual_seed(9))
    log_w, x1 = sample.log_weight.numpy(), sample.x[:, 0].numpy()
    assert (x1 > 0).mean() > 0.005, "the generator never visits the minor well"

    def delta_f(index):
        w = np.exp(log_w[index] - log_w[index].max())
        return -math.log(w[x1[index] > 0].sum() / w[x1[index] < 0].sum())

    rng = np.random.default_rng(1)
    error = np.std([delta_f(rng.integers(0, log_w.size, log_w.size)) for _ in range(200)])
    value, truth = delta_f(np.arange(log_w.size)), exact_delta_f(DoubleWell())
    assert abs(value - truth) < NSIGMA * error, (value, truth, error)
    assert kish_ess(log_w) > 0.5


def test_a_run_killed_between_phases_resumes_to_the_same_generator(tmp_path, monkeypatch):
    settings = AnnealingSettings(**{**SETTINGS, "kl_iterations": 30, "n_samples": 500, "ml_iterations": 20})
    straight = double_well_generator()
    anneal(straight, settings)

    calls = {"n": 0}
    original = annealing._rung

    def dying_rung(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(annealing, "_rung", dying_rung)
    interrupted = double_well_generator()
    with pytest.raises(KeyboardInterrupt):
        anneal(interrupted, settings, checkpoint=tmp_path / "anneal.pt")
    monkeypatch.setattr(annealing, "_rung", original)
    resumed = double_well_generator()
    result = anneal(resumed, settings, checkpoint=tmp_path / "anneal.pt")
    assert result.resumed_phases == 2
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="settings differ"):
        anneal(double_well_generator(), AnnealingSettings(**{**SETTINGS, "seed": 4}), checkpoint=tmp_path / "anneal.pt")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"temperatures": [1.0, 2.0]}, "fall strictly"),
        ({"temperatures": [4.0, 2.0]}, "end at 1"),
        ({"temperatures": [4.0, -1.0, 1.0]}, "positive"),
        ({"temperatures": []}, "positive"),
        ({"temperatures": "hot"}, "list of numbers|positive"),
        ({"n_samples": 0}, "n_samples"),
        ({"min_ess": 1.5}, "min_ess"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_schedules_that_make_no_sense_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        AnnealingSettings(**bad)


def test_a_rung_too_far_for_the_generator_warns():
    generator = double_well_generator()  # untrained: the identity, far from the target at tau = 1
    settings = AnnealingSettings(temperatures=[50.0, 1.0], kl_iterations=0, n_samples=2000, ml_iterations=1, min_ess=0.5)
    with pytest.warns(RuntimeWarning, match="too large"):
        anneal(generator, settings)


def test_a_final_kl_phase_alone_runs_its_own_iterations():
    settings = AnnealingSettings(temperatures=[1.0], kl_iterations=0, final_kl_iterations=3, kl_batch_size=16)
    assert settings.phases() == [("final-kl", 1.0, None)]
    result = anneal(double_well_generator(), settings)
    assert [p["kind"] for p in result.phases] == ["final-kl"] and result.energy_evaluations >= 3 * 16
