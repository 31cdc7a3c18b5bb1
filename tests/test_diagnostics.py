"""Diagnostics of importance weights: Pareto k-hat against known tails, per-state ESS, and the warnings where they must fire.

References are independent of the code under test: weights drawn from a generalized
Pareto distribution of known shape, scipy's maximum-likelihood fit of the same tail,
the known tail index of Gaussian importance weights, and a 1-D double well whose
free-energy difference is computed by quadrature.
"""

import math
import warnings

import numpy as np
import pytest

from openmm_bg.analysis import (
    UnreliableWeightsWarning,
    diagnostic_lines,
    generalized_pareto_fit,
    pareto_khat,
    pareto_khat_threshold,
    state_ess,
    state_free_energy,
)
from openmm_bg.analysis.diagnostics import pareto_tail_size
from openmm_bg.analysis.reweighting import state_free_energy_difference

from helpers import NSIGMA  # the shared sigma cut of the statistical tests

N = 10_000
M = pareto_tail_size(N)  # 300 weights in the fitted tail


def _shape_sd(k):
    """Asymptotic standard deviation of a shape fitted to M exceedances, (1 + k) / sqrt(M) (MLE, Smith 1987).

    The posterior mean with its prior towards 1/2 spreads less, so this bound is conservative.
    """
    return (1 + k) / math.sqrt(M)


def _prior_bias(k):
    """Shift of the estimate by the prior worth 10 observations at k = 1/2."""
    return 10 * abs(0.5 - k) / (M + 10)


def _genpareto(k, seed, n=N):
    """Draws from a generalized Pareto distribution (shape k, scale 1) by inverting its CDF."""
    u = np.random.default_rng(seed).random(n)
    return np.expm1(-k * np.log1p(-u)) / k


# --- k-hat against known tails --------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.2, 0.5, 0.9])
def test_khat_recovers_the_shape_of_generalized_pareto_weights(k):
    # the tail of a generalized Pareto distribution above any threshold is the same
    # distribution with the same shape, so k-hat estimates k itself
    seeds = range(8)
    estimates = np.array([pareto_khat(np.log(_genpareto(k, seed))) for seed in seeds])
    sd = _shape_sd(k)
    assert np.all(np.abs(estimates - k) < NSIGMA * sd + _prior_bias(k)), estimates
    assert abs(estimates.mean() - k) < NSIGMA * sd / math.sqrt(len(seeds)) + _prior_bias(k), estimates.mean()
    # the spread over seeds is that of a shape fitted to M points, not far below or above
    assert 0.3 * sd < estimates.std(ddof=1) < 2.0 * sd


@pytest.mark.parametrize("k", [0.2, 0.5, 0.9])
def test_tail_fit_agrees_with_scipy_maximum_likelihood(k):
    stats = pytest.importorskip("scipy.stats")
    for seed in range(3):
        w = np.sort(_genpareto(k, 100 + seed))
        exceedances = w[N - M:] - w[N - M - 1]
        shape_mle, _, scale_mle = stats.genpareto.fit(exceedances, floc=0)
        shape, scale = generalized_pareto_fit(exceedances)
        # two asymptotically efficient estimators of the same data differ by less than
        # their spread: allow half a standard deviation, after applying the same prior
        shrunk_mle = (M * shape_mle + 5.0) / (M + 10.0)
        assert abs(shape - shrunk_mle) < 0.5 * _shape_sd(k), (shape, shrunk_mle)
        assert pareto_khat(np.log(w)) == pytest.approx(shape, abs=1e-12)
        assert scale == pytest.approx(scale_mle, rel=0.2)


def test_khat_separates_finite_from_infinite_variance_gaussian_weights():
    # target N(0, 1), proposal N(0, s^2): w = exp((1 - s^2) z^2 / 2) with z ~ N(0, 1), so
    # P(w > t) ~ t^(-1 / (1 - s^2)): shape k = 1 - s^2; the variance is finite iff s^2 > 1/2
    def khat(s, seed):
        z = np.random.default_rng(seed).normal(size=N)
        return pareto_khat(0.5 * (1 - s * s) * z * z)

    finite = [khat(math.sqrt(0.8), seed) for seed in range(5)]  # k = 0.2
    infinite = [khat(0.3, seed) for seed in range(5)]  # k = 0.91
    assert max(finite) < 0.5 < min(infinite), (finite, infinite)
    # a wider proposal gives bounded weights: no tail at all (k < 0)
    x = np.random.default_rng(9).normal(size=N) * 1.5
    assert pareto_khat(-0.5 * x**2 + 0.5 * (x / 1.5) ** 2) < 0


def test_khat_edge_cases_and_threshold():
    assert pareto_khat(np.zeros(100)) == -math.inf  # equal weights: no tail
    assert pareto_khat(np.full(100, 3.0)) == -math.inf
    nearly_all_zero = np.r_[np.full(997, -np.inf), [0.0, 1.0, 2.0]]
    assert math.isnan(pareto_khat(nearly_all_zero))  # three weights carry everything: no tail to fit
    # only differences of log weights matter
    lw = np.log(_genpareto(0.4, 3))
    assert pareto_khat(lw + 700.0) == pytest.approx(pareto_khat(lw), abs=1e-9)
    # weights spread over thousands of kT (an untrained generator): no overflow, no RuntimeWarning, a huge k-hat
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert pareto_khat(np.random.default_rng(2).normal(size=1000) * 800.0) > 1.0
    assert pareto_tail_size(10_000) == 300 and pareto_tail_size(100) == 20
    assert pareto_khat_threshold(100) == pytest.approx(0.5)
    assert pareto_khat_threshold(1000) == pytest.approx(2 / 3)
    assert pareto_khat_threshold(100_000) == 0.7
    with pytest.raises(ValueError, match="at least 25 samples"):
        pareto_khat(np.zeros(20))
    with pytest.raises(ValueError, match="NaN"):
        pareto_khat(np.r_[np.zeros(50), np.nan])
    with pytest.raises(ValueError, match="shape \\(n,\\)"):
        pareto_khat(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="no sample has a finite weight"):
        pareto_khat(np.full(50, -np.inf))


def test_state_ess_against_the_direct_formula():
    rng = np.random.default_rng(4)
    lw = rng.normal(size=500) * 1.3 - 900.0  # far below 0: exp would underflow without a shift
    in_state = rng.random(500) < 0.3
    w = np.exp(lw[in_state] + 900.0)
    assert state_ess(lw, in_state) == pytest.approx(w.sum() ** 2 / (w * w).sum(), rel=1e-12)
    assert state_ess(np.zeros(8), np.arange(8) < 3) == pytest.approx(3.0)
    assert state_ess(np.r_[0.0, -np.inf, -np.inf], np.array([False, True, True])) == 0.0
    with pytest.raises(ValueError, match="bool array"):
        state_ess(np.zeros(3), np.zeros(4, bool))


# --- the warnings fire where they must ----------------------------------------------------------------

H, C = 4.0, 0.5  # 1-D double well u(x) = H (x^2 - 1)^2 + C x in kT; A: x < 0, B: x > 0


def _u(x):
    return H * (x * x - 1) ** 2 + C * x


def _exact_delta_f():
    grid = np.linspace(-4.0, 4.0, 400_001)  # the density is below exp(-800) outside
    p = np.exp(-_u(grid))
    return -math.log(np.sum(p * (grid > 0)) / np.sum(p * (grid < 0)))


def _messages(call):
    """The result of ``call()`` and the messages of the UnreliableWeightsWarnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, UnreliableWeightsWarning)]


def _gaussian_proposal(mean, sd, seed, n=N):
    """Samples of N(mean, sd^2) with their log weights against the double well."""
    x = np.random.default_rng(seed).normal(mean, sd, size=n)
    return x, -_u(x) + 0.5 * ((x - mean) / sd) ** 2


def test_double_well_reference():
    # the two wells' harmonic (Laplace) estimate: F_B - F_A ~ u(1) - u(-1) = 2 C, up to anharmonic terms
    assert _exact_delta_f() == pytest.approx(2 * C, abs=0.1)


def test_a_generator_that_misses_a_state_must_not_report_a_small_error():
    truth = _exact_delta_f()
    misleading = 0
    for seed in range(6):
        # a generator sitting in well A: ~0.2 % of its samples cross into B, near the barrier
        x, lw = _gaussian_proposal(-1.0, 0.35, seed)
        assert (x > 0).sum() > 0
        result, fired = _messages(lambda: state_free_energy(lw, x < 0, x > 0, n_bootstrap=200, seed=seed))
        covered = abs(result["delta_f_kT"] - truth) <= 2 * result["error_kT"]
        # either the truth lies within two reported errors, or the report says it cannot be trusted
        assert covered or (fired and not result["reliable"] and result["warnings"]), (seed, result)
        assert fired == result["warnings"]
        misleading += not covered
    # the case is a real one: the bootstrap error alone would have misled in most runs
    assert misleading >= 4


def test_a_generator_that_never_visits_a_state_gets_a_clear_error():
    x, lw = _gaussian_proposal(-1.0, 0.35, 0)
    inside = x < 0  # the generator's support stops at the barrier
    x, lw = x[inside], lw[inside]
    with pytest.raises(ValueError, match=r"state B contains no sample with a finite weight \(0 of \d+ samples lie in it\)"):
        state_free_energy(lw, x < 0, x > 0)
    with pytest.raises(ValueError, match="state B holds no sample"):
        state_free_energy_difference(x < 0, x > 0, lw)
    # samples in B whose energies failed (zero weight) leave it just as empty
    lw_failed = np.r_[lw, [-np.inf, -np.inf]]
    with pytest.raises(ValueError, match="all with infinite energy"):
        state_free_energy(lw_failed, np.r_[x < 0, False, False], np.r_[x > 0, True, True])


def test_well_behaved_weights_give_no_warning_and_cover_the_truth():
    truth = _exact_delta_f()
    x, lw = _gaussian_proposal(0.0, 1.5, 11)  # wider than both wells: bounded weights
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableWeightsWarning)
        result = state_free_energy(lw, x < 0, x > 0, n_bootstrap=200, seed=1)
    assert result["reliable"] and result["warnings"] == []
    assert result["k_hat"] < 0.5 and min(result["ess_a"], result["ess_b"]) > 1000
    assert abs(result["delta_f_kT"] - truth) < NSIGMA * result["error_kT"]
    lines = diagnostic_lines(result, N)
    assert lines[0] == f"Pareto k-hat          {result['k_hat']:.2f} (weights trusted below 0.70; finite variance below 0.5)"
    assert lines[1].startswith("state A               A: ") and not any(line.startswith("warning") for line in lines)


@pytest.mark.parametrize("seed", range(4))
def test_weights_dominated_by_a_few_samples_trigger_the_khat_warning(seed):
    # log-normal weights with sigma = 3: a few samples carry a large part of the total
    lw = np.random.default_rng(seed).normal(size=N) * 3.0
    w = np.exp(lw - lw.max())
    assert np.sort(w)[-10:].sum() / w.sum() > 0.2  # ten of 10^4 samples carry over a fifth
    in_a = np.arange(N) % 2 == 0  # states that both hold many samples: only k-hat can fire
    result, fired = _messages(lambda: state_free_energy(lw, in_a, ~in_a, n_bootstrap=20))
    assert result["k_hat"] > pareto_khat_threshold(N) and not result["reliable"]
    assert fired[0].startswith(f"Pareto k-hat {result['k_hat']:.2f} > 0.70: the weights are heavy-tailed")
    assert any(line.startswith("warning               Pareto k-hat") for line in diagnostic_lines(result, N))


def test_too_few_effective_samples_in_a_state_warn():
    rng = np.random.default_rng(5)
    lw = rng.normal(size=2000) * 0.1
    in_b = np.zeros(2000, bool)
    in_b[:40] = True
    lw[:40] = [8.0] * 3 + [0.0] * 37  # three samples carry state B
    result, fired = _messages(lambda: state_free_energy(lw, ~in_b, in_b, n_bootstrap=20, names=("A", "B (x > 1)")))
    assert result["ess_b"] < 10 < result["ess_a"]
    assert f"state B (x > 1) has {result['ess_b']:.1f} effective samples (fewer than 10)" in " ".join(fired)
    assert not any(message.startswith("state A") for message in fired)


def test_a_bootstrap_that_empties_a_state_reports_an_unbounded_error_without_runtime_warnings():
    # one sample in B: about a third of the resamples miss it
    lw = np.zeros(200)
    in_b = np.arange(200) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        estimate = state_free_energy_difference(~in_b, in_b, lw, n_bootstrap=50, seed=0)
        assert estimate.value == pytest.approx(math.log(199)) and estimate.error == math.inf
        result, fired = _messages(lambda: state_free_energy(lw, ~in_b, in_b, n_bootstrap=50))
    assert result["error_kT"] == math.inf
    assert any("the bootstrap error is unbounded" in message for message in fired)


def test_combining_trainings_covers_the_training_variance_their_bootstraps_miss():
    """Trainings whose estimates scatter with sd 0.1 around the truth while each reports 0.03
    (as alanine dipeptide's generators do): over 2000 sets of 3 and of 6 trainings, twice the
    combined error holds the truth in 95 % of sets within NSIGMA binomial standard errors, where
    the bootstrap errors alone would hold it far less often (without Student's t factor the
    coverage would be 82 % for 3 trainings)."""
    from helpers import NSIGMA
    from openmm_bg.analysis import combine_trainings

    rng = np.random.default_rng(11)
    for n in (3, 6):
        covered, naive = 0, 0
        for _ in range(2000):
            values = 4.6 + 0.1 * rng.standard_normal(n)
            result = combine_trainings(values, np.full(n, 0.03))
            covered += abs(result["value"] - 4.6) <= 2 * result["error"]
            naive += abs(result["value"] - 4.6) <= 2 * result["error_bootstrap"]
        p = 0.95
        assert abs(covered / 2000 - p) < NSIGMA * np.sqrt(p * (1 - p) / 2000), (n, covered / 2000)
        assert naive / 2000 < 0.5
    with pytest.raises(ValueError, match="at least 2"):
        combine_trainings([4.6], [0.03])
    with pytest.raises(ValueError, match="same length"):
        combine_trainings([4.6, 4.7], [0.03])
    with pytest.raises(ValueError, match="non-negative"):
        combine_trainings([4.6, 4.7], [0.03, -0.01])
    assert combine_trainings([4.6, 4.7], [0.03, np.inf])["error"] == np.inf


def test_repeat_standard_error_is_student_t_widened():
    from scipy import stats

    from openmm_bg.analysis import repeat_standard_error

    values = [4.4, 4.8, 4.5, 4.7]
    plain = np.std(values, ddof=1) / 2
    assert repeat_standard_error(values) == pytest.approx(plain * stats.t.ppf(0.975, 3) / 1.959964, rel=1e-6)
    assert repeat_standard_error(values, coverage=0.6827) == pytest.approx(plain * stats.t.ppf(0.84135, 3), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        repeat_standard_error([4.6])
    with pytest.raises(ValueError, match="coverage"):
        repeat_standard_error(values, coverage=1.0)
