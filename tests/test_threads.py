"""Choosing torch's intra-op threads: by a timing of the run's own work, or as the user says.

The chooser is tested on workloads whose cost depends on ``torch.get_num_threads()``
and a fake clock, so no real timing decides a pass; the commands are tested for what
they apply and print, never for how fast they run.
"""

import mdtraj as md
import pytest
import torch

import openmm_bg.simulation  # noqa: F401  (imports pymbar, whose banner must not land inside a captured test)
from openmm_bg.cli import main
from openmm_bg.commands._options import training_workload
from openmm_bg.generator.checkpoints import save_generator
from openmm_bg.generator.recipes import molecular_generator_from_data
from openmm_bg.molecules.systems import get_system
from openmm_bg.reference import DATA_DIR
from openmm_bg.training.threads import ThreadChoice, available_cores, choose_torch_threads, format_thread_choice, parallel_keeps_pace, torch_threads

COMMANDS = ("train", "sample", "explore", "simulate", "demo", "toy")


class FakeClock:
    """Seconds that pass only when a fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def costing(clock, seconds_at, calls=None):
    """A workload that takes ``seconds_at[torch.get_num_threads()]`` on ``clock``."""

    def workload():
        n = torch.get_num_threads()
        if calls is not None:
            calls.append(n)
        clock.now += seconds_at[n]

    return workload


def never():
    raise AssertionError("the workload must not run")


@pytest.fixture(autouse=True)
def _one_thread_and_no_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.mark.parametrize("seconds_at, expected", [({1: 0.010, 2: 0.002}, 2), ({1: 0.002, 2: 0.010}, 1), ({1: 0.012, 2: 0.095}, 1)])
def test_the_faster_thread_count_is_chosen(seconds_at, expected):
    clock = FakeClock()
    choice = choose_torch_threads(costing(clock, seconds_at), candidates=(1, 2), clock=clock, environ={}, screen=None)
    assert choice.n_threads == expected and choice.source == "measured"
    assert choice.seconds == pytest.approx(seconds_at)


def test_more_threads_must_save_more_than_the_margin():
    clock = FakeClock()
    workload = costing(clock, {1: 0.0100, 2: 0.0097})
    assert choose_torch_threads(workload, candidates=(1, 2), margin=0.05, clock=clock, environ={}, screen=None).n_threads == 1
    assert choose_torch_threads(workload, candidates=(1, 2), margin=0.0, clock=clock, environ={}, screen=None).n_threads == 2


def test_the_median_of_the_rounds_counts():
    # one slow call at one thread (another job woke up) does not decide: the mean would pick two threads
    clock = FakeClock()
    costs = iter([0.010, 0.019, 0.011, 0.011, 0.010, 0.010, 0.011])  # warm-up, then threads 1, 2 | 2, 1 | 1, 2

    def workload():
        clock.now += next(costs)

    choice = choose_torch_threads(workload, candidates=(1, 2), repeats=3, margin=0.0, clock=clock, environ={}, screen=None)
    assert choice.seconds == pytest.approx({1: 0.010, 2: 0.011}) and choice.n_threads == 1


def test_the_time_budget_and_a_clear_winner_end_the_rounds():
    clock, calls = FakeClock(), []
    # each call 0.3 s: one warm-up and one round (0.9 s) leave no room for a second round within 1 s
    choose_torch_threads(costing(clock, {1: 0.3, 2: 0.3}, calls), candidates=(1, 2), repeats=5, max_seconds=1.0, clock=clock, environ={}, screen=None)
    assert calls == [1, 1, 2]
    calls.clear()
    # within budget, rounds go on while the candidates are close; the order alternates
    choose_torch_threads(costing(clock, {1: 0.01, 2: 0.01}, calls), candidates=(1, 2), repeats=3, max_seconds=1.0, clock=clock, environ={}, screen=None)
    assert calls == [1, 1, 2, 2, 1, 1, 2]
    calls.clear()
    # two threads ten times slower (a busy machine): not timed again
    choose_torch_threads(costing(clock, {1: 0.01, 2: 0.1}, calls), candidates=(1, 2), repeats=5, clock=clock, environ={}, screen=None)
    assert calls == [1, 1, 2]


def test_a_candidate_that_fails_the_quick_check_is_not_timed():
    clock, calls, screened = FakeClock(), [], []

    def screen(n):
        screened.append(n)
        return n != 4

    choice = choose_torch_threads(costing(clock, {1: 0.01, 2: 0.005}, calls), candidates=(1, 2, 4), clock=clock, environ={}, screen=screen)
    assert screened == [2, 4] and 4 not in calls and choice.n_threads == 2 and choice.screened_out == (4,)
    calls.clear()
    alone = choose_torch_threads(costing(clock, {1: 0.01}, calls), candidates=(1, 2), clock=clock, environ={}, screen=lambda n: False)
    assert alone.n_threads == 1 and calls == []  # nothing left to compare: the workload is not run
    assert format_thread_choice(alone) == "torch threads: 1 (measured: 2 threads over 2x slower than 1 in a quick check)"


def test_the_quick_check_answers_and_restores_the_thread_count():
    # its answer depends on the machine's load, so only its type is checked
    assert isinstance(parallel_keeps_pace(2, n_loops=5), bool) and torch.get_num_threads() == 1


def test_the_override_wins():
    choice = choose_torch_threads(never, override=3, environ={"OMP_NUM_THREADS": "2"})
    assert (choice.n_threads, choice.source) == (3, "override")
    assert format_thread_choice(choice, override_label="--threads") == "torch threads: 3 (--threads)"
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="positive integer"):
            choose_torch_threads(never, override=bad)


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("4,2", 4)])
def test_omp_num_threads_is_honoured(value, expected):
    choice = choose_torch_threads(never, environ={"OMP_NUM_THREADS": value})
    assert (choice.n_threads, choice.source) == (expected, "OMP_NUM_THREADS")
    assert format_thread_choice(choice) == f"torch threads: {expected} (OMP_NUM_THREADS={value})"


@pytest.mark.parametrize("value", ["0", "x", "-1", "1.5"])
def test_a_bad_omp_num_threads_is_an_error(value):
    with pytest.raises(ValueError, match="OMP_NUM_THREADS must be a positive integer"):
        choose_torch_threads(never, environ={"OMP_NUM_THREADS": value})


def test_the_environment_is_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_torch_threads(never).source == "OMP_NUM_THREADS"
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert choose_torch_threads(None).source == "no workload"


def test_without_a_workload_or_a_choice_one_thread():
    choice = choose_torch_threads(None, environ={})
    assert choice.n_threads == 1
    assert format_thread_choice(choice) == "torch threads: 1 (nothing to time here)"
    only = choose_torch_threads(never, candidates=(2,), environ={})
    assert only.n_threads == 2 and format_thread_choice(only) == "torch threads: 2 (the only candidate)"


def test_default_candidates_are_one_thread_and_all_cores():
    clock, calls = FakeClock(), []
    cores = available_cores()
    choice = choose_torch_threads(costing(clock, {1: 0.01, cores: 0.01}, calls), clock=clock, environ={}, screen=None)
    assert set(calls) == {1, cores}
    if cores == 1:
        assert choice.source == "one core" and format_thread_choice(choice) == "torch threads: 1 (1 core available)"


def test_a_cpu_quota_caps_the_available_cores(tmp_path):
    import os

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # one and a half cores: two threads may run
    assert available_cores(quota) == min(affinity, 2)
    quota.write_text("max 100000\n")
    assert available_cores(quota) == affinity == available_cores(tmp_path / "missing")


def test_the_global_thread_count_is_restored():
    torch.set_num_threads(1)
    clock = FakeClock()
    choice = choose_torch_threads(costing(clock, {1: 0.01, 2: 0.001}), candidates=(1, 2), clock=clock, environ={}, screen=None)
    assert choice.n_threads == 2 and torch.get_num_threads() == 1

    def failing():
        raise RuntimeError("the workload failed")

    with pytest.raises(RuntimeError, match="the workload failed"):
        choose_torch_threads(failing, candidates=(1, 2), environ={}, screen=None)
    assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError):
        with torch_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError
    assert torch.get_num_threads() == 1


def test_the_line_the_commands_print():
    choice = ThreadChoice(1, "measured", {1: 0.012, 2: 0.095})
    assert format_thread_choice(choice) == "torch threads: 1 (measured: 1 thread 12 ms/step, 2 threads 95 ms/step)"
    assert format_thread_choice(choice, per="256 samples").endswith("95 ms/256 samples)")


def test_the_training_workload_leaves_the_weights_as_they_were():
    generator = _tiny_generator()
    before = {name: p.detach().clone() for name, p in generator.named_parameters()}
    batch = torch.as_tensor(_frames()[:16], dtype=next(generator.parameters()).dtype)
    training_workload(generator, batch, kl_batch_size=8, temperatures=(1.0, 2.0))()
    for name, p in generator.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None


# ---------------------------------------------------------------- the commands


def _frames():
    return md.load(str(DATA_DIR / "ala2-vacuum-300K-md.dcd"), top=str(DATA_DIR / "ala2-vacuum-300K-md.pdb"))[:100].xyz


def _tiny_generator():
    generator, _ = molecular_generator_from_data(get_system("ala2-vacuum").topology, _frames(), None, n_blocks=1, hidden=[8])
    return generator


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained one-block generator for alanine dipeptide: sampling it is all the commands need."""
    generator, kwargs = molecular_generator_from_data(get_system("ala2-vacuum").topology, _frames(), None, n_blocks=1, hidden=[8])
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    return save_generator(generator, path, "openmm_bg.generator.recipes.molecular_generator", kwargs, {"system": "ala2-vacuum", "temperature_K": 300.0})


def _command_argv(command, tmp_path, checkpoint_path):
    return {
        "train": ["train", "ala2-vacuum", "--trajectory", str(tmp_path / "none.dcd"), "-o", str(tmp_path / "t")],
        "sample": ["sample", str(checkpoint_path), "-n", "10", "-o", str(tmp_path / "s")],
        "explore": ["explore", "ala2-vacuum", "-o", str(tmp_path / "g.pt")],
        "simulate": ["simulate", "ala2-vacuum", "-o", str(tmp_path / "x.dcd")],
        "demo": ["demo", "-o", str(tmp_path / "d")],
        "toy": ["toy", "--output", str(tmp_path / "toy")],
    }[command]


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_threads_end_in_one_line_and_exit_2(command, value, tmp_path, capsys):
    # the check comes before any work: no trajectory, checkpoint or system is read
    argv = _command_argv(command, tmp_path, tmp_path / "missing.pt") + [f"--threads={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"openmm-bg {command}: error: --threads must be a positive integer or auto")


def _record_draw_threads(monkeypatch):
    import openmm_bg.sampling

    seen = []
    draw = openmm_bg.sampling.draw_samples

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return draw(*args, **kwargs)

    # the command imports draw_samples when it runs (so that --help needs no torch)
    monkeypatch.setattr(openmm_bg.sampling, "draw_samples", recording)
    return seen


def test_threads_given_are_applied_for_the_run_and_restored(checkpoint, tmp_path, capsys, monkeypatch):
    calls = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), set_threads(n))[1])
    seen = _record_draw_threads(monkeypatch)
    for given in (2, 1):
        calls.clear()
        assert main(["sample", str(checkpoint), "-n", "20", "-o", str(tmp_path / f"s{given}"), "--no-progress", "--threads", str(given)]) == 0
        assert seen[-1] == given and calls == [given, 1]  # set for the run, then back to the caller's one thread
        assert f"torch threads: {given} (--threads)\n" in capsys.readouterr().out
    assert torch.get_num_threads() == 1


def test_auto_measures_unless_omp_num_threads_is_set(checkpoint, tmp_path, capsys, monkeypatch):
    seen = _record_draw_threads(monkeypatch)
    assert main(["sample", str(checkpoint), "-n", "20", "-o", str(tmp_path / "auto"), "--no-progress"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("torch threads:"))
    # which count wins depends on the machine's load; that it was measured on 20-sample batches does not
    assert ("(measured: 1 thread" in line and "ms/20 samples" in line) or "quick check" in line or line == "torch threads: 1 (1 core available)"
    assert seen[-1] == int(line.split()[2]) and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert main(["sample", str(checkpoint), "-n", "20", "-o", str(tmp_path / "env"), "--no-progress"]) == 0
    assert "torch threads: 2 (OMP_NUM_THREADS=2)\n" in capsys.readouterr().out and seen[-1] == 2


def test_simulate_has_nothing_to_time(tmp_path, capsys):
    assert main(["simulate", "ala2-vacuum", "-o", str(tmp_path / "md.dcd"), "--frames", "2", "--steps-per-frame", "2", "--no-progress"]) == 0
    assert "torch threads: 1 (nothing to time here)\n" in capsys.readouterr().out


@pytest.mark.parametrize("command, module, function", [("demo", "openmm_bg.recipes.demo", "run_demo"), ("toy", "openmm_bg.recipes.toy", "run_toy_demo")])
def test_demo_and_toy_pass_only_an_explicit_count_to_their_settings(command, module, function, tmp_path, capsys, monkeypatch):
    import importlib

    received = []

    def stop(settings, *args, **kwargs):
        received.append(settings.torch_threads)
        raise ValueError("stopped before the run")

    monkeypatch.setattr(importlib.import_module(module), function, stop)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the recipes apply their own setting: the environment does not reach them
    argv = _command_argv(command, tmp_path, None)
    assert main(argv) == 2
    setting = "DemoSettings.torch_threads" if command == "demo" else "ToyDemoSettings.torch_threads"
    assert received == [1] and f"torch threads: 1 ({setting}; --threads N to change)\n" in capsys.readouterr().out
    assert main(argv + ["--threads", "3"]) == 2
    assert received == [1, 3] and "torch threads: 3 (--threads)\n" in capsys.readouterr().out
