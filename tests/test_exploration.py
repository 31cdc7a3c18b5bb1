"""Tests of the adaptive exploration loop (openmm_bg.training.exploration) and ``openmm-bg explore``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from openmm_bg.commands import explore as explore_command
from openmm_bg.energies import OpenMMEnergy
from openmm_bg.energies.toy_systems import double_well_system
from openmm_bg.training.exploration import ExplorationSettings, explore
from openmm_bg.generator.checkpoints import load_generator
from openmm_bg.moves import BoltzmannGeneratorMove
from openmm_bg.sampling import load_checkpoint
from openmm_bg.generator.recipes import realnvp_generator
from openmm_bg.training.recipe import seeded_parameters


@pytest.mark.timeout(240)
def test_exploration_from_one_configuration_reaches_the_other_well():
    # left minimum of x^4 - 6 x^2 + x; the right well (x > 1) lies behind a ~9 kT barrier
    energy = OpenMMEnergy(double_well_system(temperature=300.0), 300.0, platform="Reference")
    generator = seeded_parameters(lambda: realnvp_generator(event_shape=[1, 3], n_blocks=3, hidden=[32, 32]), seed=0)
    settings = ExplorationSettings(n_iterations=150, buffer_size=128, batch_size=64, step_size=1.0, warmup_steps=20, warmup_step_size=0.1, n_final_samples=200, seed=0, learning_rate=3e-3)
    result = explore(generator, energy, np.array([[-1.7, 0.0, 0.0]]), settings, target=lambda x: x[:, 0, 0] > 1.0, stop_at_target=True)
    print(f"reached x > 1 after {result.evaluations_to_target} energy evaluations ({len(result.history)} iterations)")
    assert result.evaluations_to_target is not None
    assert np.all(np.isfinite(result.buffer_energies))
    assert result.samples.shape == (200, 1, 3) and np.isfinite(result.log_weights).any()


def test_explore_settings_reject_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        ExplorationSettings(buffer_size=10, batch_size=20)
    with pytest.raises(ValueError, match="step_size"):
        ExplorationSettings(step_size=0.0)


@pytest.mark.timeout(240)
def test_explore_command_writes_a_checkpoint_a_move_can_load(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    explore_command.configure(parser)
    out = tmp_path / "dw.pt"
    args = parser.parse_args(["double-well", "-o", str(out), "--target", "right", "--stop-at-target", "--iterations", "150", "--buffer-size", "128", "--batch-size", "64", "--step-size", "1.0", "--warmup-step-size", "0.1", "--warmup-steps", "20", "--learning-rate", "3e-3", "--hidden", "32", "32", "--final-samples", "100"])
    status = explore_command.run(args)
    printed = capsys.readouterr().out
    print(printed)
    assert "target right: reached after" in printed and status == 0
    move = BoltzmannGeneratorMove(str(out), n_proposals=2, seed=0)
    assert move.generator.event_shape == (1, 3)
    assert load_generator(out).event_shape == (1, 3)
    # the checkpoint carries its molecule, as the training recipe's do
    generator, molecule, temperature, _ = load_checkpoint(out)
    assert molecule.name == "double-well" and temperature == 300.0 and molecule.n_atoms == 1
    with pytest.raises(ValueError, match="unknown state"):
        explore_command.run(parser.parse_args(["double-well", "-o", str(out), "--target", "nowhere"]))
