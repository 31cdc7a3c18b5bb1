"""Repeats grown together in rounds (openmm_bg.simulation.rounds)."""

import pytest

from openmm_bg.simulation.rounds import LOG_FILE, STOP_FILE, grow_in_rounds


def test_every_repeat_reaches_each_round_before_the_next(tmp_path):
    calls = []
    last = grow_in_rounds(tmp_path / "run", [0, 1], 250, 100, lambda r, t: calls.append((r, t)))
    assert calls == [(0, 100), (1, 100), (0, 200), (1, 200), (0, 250), (1, 250)] and last == 250
    assert len((tmp_path / "run" / LOG_FILE).read_text().splitlines()) == 6


def test_a_stop_file_ends_after_the_current_round(tmp_path):
    calls = []

    def advance(repeat, target):
        calls.append((repeat, target))
        if target == 200 and repeat == 3:
            (tmp_path / STOP_FILE).touch()
        return f"holds {target} cycles"

    assert grow_in_rounds(tmp_path, [3, 4], 1000, 100, advance) == 200
    assert calls[-1] == (4, 200)
    log = (tmp_path / LOG_FILE).read_text()
    assert "repeat 4 holds 200 cycles" in log and "STOP file found" in log


@pytest.mark.parametrize("args, message", [((10, 0), "round_size"), ((0, 5), "total")])
def test_bad_sizes(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        grow_in_rounds(tmp_path, [0], *args, lambda r, t: None)
