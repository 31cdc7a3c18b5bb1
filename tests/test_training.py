import io
import math

import numpy as np
import pytest
import torch

from helpers import gaussian_generator
from openmm_bg.generator.prior import NormalPrior
from openmm_bg.energies import DoubleWell
from openmm_bg.flows import real_nvp
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.training.trainer import Schedule, Trainer, TrainingConfig


def small_generator(seed=0):
    torch.manual_seed(seed)
    return BoltzmannGenerator(NormalPrior(2), real_nvp(2, n_blocks=2, hidden=(16,)), DoubleWell()).double()


def data():
    return torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3 + torch.tensor([-1.7, 0.0], dtype=torch.float64)


CONFIG = dict(
    batch_size=32, kl_batch_size=32, w_ml=[[0, 1.0], [10, 0.5]], w_kl=[[0, 0.0], [5, 1.0]], w_rc=0.2, temperatures=[1.0, 2.0], seed=3,
    lr_schedule="cosine", weight_decay=1e-4,
)


def test_schedule_interpolates_and_validates():
    s = Schedule([[0, 0.0], [10, 1.0], [20, 0.5]])
    assert [s(t) for t in (-1, 0, 5, 10, 15, 20, 99)] == [0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5]
    assert Schedule(0.3)(1000) == 0.3
    for bad in ([[0, 1.0], [0, 2.0]], [[0, -1.0]], "fast", [[0, float("nan")]]):
        with pytest.raises(ValueError):
            Schedule(bad)


def test_cosine_learning_rate_reaches_the_optimizer():
    config = TrainingConfig(n_iterations=10, batch_size=8, learning_rate=1e-2, min_learning_rate=1e-4, lr_schedule="cosine")
    trainer = Trainer(small_generator(), config, data=data())
    trainer.train(progress=False)
    lr = trainer.history_array("lr")
    expected = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + np.cos(np.pi * np.arange(10) / 10))
    np.testing.assert_allclose(lr, expected, rtol=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr[-1])
    assert Trainer(small_generator(), TrainingConfig(), data=data()).learning_rate(500) == 1e-3
    assert TrainingConfig(learning_rate="1e-3").learning_rate == 1e-3  # as PyYAML reads 1e-3
    with pytest.raises(ValueError, match="learning_rate must be a number, got 'fast'"):
        TrainingConfig(learning_rate="fast")
    for bad in ({"lr_schedule": "step"}, {"weight_decay": -1.0}, {"learning_rate": 0.0}):
        with pytest.raises(ValueError, match="lr_schedule|weight_decay|learning_rate"):
            TrainingConfig(**bad)


def test_resume_from_checkpoint_is_exact(tmp_path):
    straight = Trainer(small_generator(), TrainingConfig(n_iterations=16, **CONFIG), data=data(), reaction_coordinate=lambda x: x[:, 0])
    straight.train(progress=False)

    first = Trainer(small_generator(), TrainingConfig(n_iterations=16, **CONFIG), data=data(), reaction_coordinate=lambda x: x[:, 0])
    first.train(8, progress=False)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = Trainer(small_generator(seed=99), TrainingConfig(n_iterations=16, **CONFIG), data=data(), reaction_coordinate=lambda x: x[:, 0])
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.iteration == 8
    resumed.train(progress=False)

    for (name, a), b in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.history == resumed.history
    assert straight.energy_evaluations == resumed.energy_evaluations == 32 * 2 * 16
    assert {"ml", "kl", "rc", "loss", "w_ml", "w_kl", "w_rc"} <= set(straight.history[-1])
    assert straight.history_array("w_kl")[0] == 0.0 and straight.history_array("w_kl")[-1] == 1.0


def test_training_by_example_lowers_the_negative_log_likelihood():
    trainer = Trainer(small_generator(), TrainingConfig(n_iterations=150, batch_size=128, learning_rate=5e-3), data=data())
    trainer.train(progress=False)
    ml = trainer.history_array("ml")
    assert ml[-20:].mean() < ml[:5].mean() - 1.0


def test_nonfinite_energies_skip_the_step_and_are_reported():
    gen = gaussian_generator(dim=2)
    base = gen.target.fn
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        u = base(x)
        return torch.where(torch.arange(x.shape[0]) == 0, torch.full_like(u, float("nan")), u) if calls["n"] == 2 else u

    gen.target.fn = flaky
    trainer = Trainer(gen, TrainingConfig(n_iterations=3, w_ml=0.0, w_kl=1.0, kl_batch_size=16, learning_rate=0.1))
    before = {}

    def snapshot():
        return [p.detach().clone() for p in gen.parameters()]

    trainer.step()
    before = snapshot()
    with pytest.warns(RuntimeWarning, match="1 non-finite energies"):
        row = trainer.step()
    assert row["skipped"] and row["n_nonfinite"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    row = trainer.step()
    assert not row["skipped"] and not all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    assert trainer.n_skipped == 1


def test_missing_inputs_and_bad_settings_raise():
    with pytest.raises(ValueError, match="no training data"):
        Trainer(small_generator(), TrainingConfig(w_ml=1.0))
    with pytest.raises(ValueError, match="no reaction_coordinate"):
        Trainer(small_generator(), TrainingConfig(w_ml=0.0, w_kl=1.0, w_rc=[[0, 0.0], [10, 1.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        Trainer(small_generator(), TrainingConfig(), data=torch.full((4, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"unknown training settings \['learning_rat'\]"):
        TrainingConfig.from_dict({"learning_rat": 0.1})
    with pytest.raises(ValueError, match="nonfinite"):
        TrainingConfig(nonfinite="ignore")


def test_corrupt_or_missing_checkpoint(tmp_path):
    trainer = Trainer(small_generator(), TrainingConfig(), data=data())
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        trainer.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read checkpoint"):
        trainer.load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(ValueError, match="lacks"):
        trainer.load_checkpoint(other)


def test_yaml_settings_round_trip_and_errors(tmp_path):
    config = TrainingConfig(n_iterations=7, w_kl=[[0, 0.0], [5, 1.0]], temperatures=[1.0, 2.0], energy_cut=None)
    path = config.to_yaml(tmp_path / "run" / "settings.yaml")
    assert TrainingConfig.from_yaml(path) == config
    partial = tmp_path / "partial.yaml"
    partial.write_text("learning_rate: 0.01\nw_ml: 0.5\n")
    loaded = TrainingConfig.from_yaml(partial)
    assert loaded.learning_rate == 0.01 and loaded.w_ml == 0.5 and loaded.n_iterations == TrainingConfig().n_iterations
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.01\n")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainingConfig.from_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        TrainingConfig.from_yaml(bad)
    bad.write_text("a: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        TrainingConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        TrainingConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("precision, rel", [("float64", 1e-12), ("float32", 1e-5)])
def test_validation_loss_is_recorded_on_held_out_data_only(precision, rel):
    # 20 training points and 500 held-out ones from the same Gaussian: many steps on the
    # small set must lower its loss below the held-out loss (over-fitting made visible)
    train, held_out = data()[:20], data()[20:]
    config = TrainingConfig(n_iterations=300, batch_size=20, learning_rate=1e-2, validate_every=50, precision=precision)
    trainer = Trainer(small_generator(), config, data=train, validation_data=held_out)
    trainer.train(progress=False)
    rows = [row for row in trainer.history if "ml_validation" in row]
    assert [row["iteration"] for row in rows] == [0, 50, 100, 150, 200, 250, 299]
    with torch.no_grad():
        final = float(-trainer.generator.log_prob(held_out).mean())
        on_train = float(-trainer.generator.log_prob(train).mean())
    # recorded during training, in the training precision
    assert rows[-1]["ml_validation"] == pytest.approx(final, rel=rel)
    assert trainer.validation_loss() == pytest.approx(final, rel=1e-12)
    assert on_train < final - 0.1
    assert Trainer(small_generator(), config, data=train).validation_loss() != Trainer(small_generator(), config, data=train).validation_loss()  # nan without data
    with pytest.raises(ValueError, match="validation data"):
        Trainer(small_generator(), config, data=train, validation_data=torch.full((5, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="validate_every"):
        TrainingConfig(validate_every=0)


def test_seeded_parameters_depend_on_the_seed_alone_and_leave_the_global_generator():
    from openmm_bg.training.recipe import seeded_parameters

    def build():
        return real_nvp(4, n_blocks=2, hidden=(8,)).double()

    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    a = seeded_parameters(build, 5)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(2)
    b, c = seeded_parameters(build, 5), seeded_parameters(build, 6)
    reference = build().state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
        # the output layers that start each coupling as the identity stay zero
        assert bool(value.any()) == bool(reference[key].any()) and (not value.any() or not torch.equal(value, c.state_dict()[key])), key
    with pytest.raises(ValueError, match="seed"):
        seeded_parameters(build, -1)


def test_training_runs_in_float32_and_hands_back_a_float64_generator(monkeypatch):
    seen = []
    original = Trainer.step

    def recording_step(self):
        seen.append(self.generator._param_like().dtype)
        return original(self)

    monkeypatch.setattr(Trainer, "step", recording_step)
    trainer = Trainer(small_generator(), TrainingConfig(n_iterations=5, batch_size=16), data=data())
    assert TrainingConfig().precision == "float32"
    trainer.train(progress=False)
    assert seen == [torch.float32] * 5
    assert all(p.dtype == torch.float64 for p in trainer.generator.parameters())
    moments = [v for state in trainer.optimizer.state.values() for k, v in state.items() if k != "step"]
    assert moments and all(v.dtype == torch.float64 for v in moments)
    # the trained float64 weights are float32 values: a second cast loses nothing
    for p in trainer.generator.parameters():
        assert torch.equal(p, p.float().double())
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainingConfig(precision="half")


def test_float32_training_leaves_the_bijections_constants_exact():
    """Buffers (normalisation widths, constrained lengths) are constants of the bijection: a
    float32 round trip would turn pi into float32(pi) for good."""
    generator = small_generator()
    generator.flow.register_buffer("constant", torch.tensor([math.pi, 0.109], dtype=torch.float64))
    Trainer(generator, TrainingConfig(n_iterations=3, batch_size=16), data=data()).train(progress=False)
    assert torch.equal(generator.flow.constant, torch.tensor([math.pi, 0.109], dtype=torch.float64))


def test_keep_best_puts_back_the_generator_with_the_lowest_held_out_loss():
    """Over-fitting made on purpose (20 training points, a large learning rate): the held-out loss
    falls, then rises.  keep: best ends with the parameters of its lowest validation; the last
    ones stay in last_parameters; the over-fitting warning fires; patience stops early."""
    train, held_out = data()[:20], data()[20:]
    base = dict(n_iterations=400, batch_size=20, learning_rate=3e-2, validate_every=20, precision="float64", overfit_warning=0.2)
    trainer = Trainer(small_generator(), TrainingConfig(keep="best", **base), data=train, validation_data=held_out)
    with pytest.warns(RuntimeWarning, match="over-fitting"):
        trainer.train(progress=False)
    rows = [row for row in trainer.history if "ml_validation" in row]
    losses = [row["ml_validation"] for row in rows]
    best = min(losses)
    assert losses[-1] > best + 0.2, "the run did not over-fit; the test sees nothing"
    assert trainer.best["iteration"] == rows[losses.index(best)]["iteration"]
    assert trainer.validation_loss() == pytest.approx(best, rel=1e-12)
    kept = {name: p.clone() for name, p in trainer.generator.named_parameters()}
    assert trainer.last_parameters is not None
    assert any(not torch.equal(kept[name], value) for name, value in trainer.last_parameters.items())
    # the same run with patience stops soon after the best
    stopping = Trainer(small_generator(), TrainingConfig(keep="best", patience=3, **base), data=train, validation_data=held_out)
    with pytest.warns(RuntimeWarning):
        stopping.train(progress=False)
    assert stopping.stopped_early and stopping.iteration < 400
    assert stopping.iteration <= trainer.best["iteration"] + 3 * 20 + 1
    with pytest.raises(ValueError, match="need validation data"):
        Trainer(small_generator(), TrainingConfig(keep="best"), data=train)
    with pytest.raises(ValueError, match="keep must be"):
        TrainingConfig(keep="first")
