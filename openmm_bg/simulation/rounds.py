"""Grow independent repeats of a long run together, in rounds, so that stopping leaves them equal.

Reference runs here take hours to days on a laptop and are resumed across sessions.  Each
round brings every repeat to the next multiple of ``round_size``, so a run stopped at any
time holds repeats of (nearly) equal length, and running the same command again resumes
it.  A file ``STOP`` in the run folder ends the run after the current round; every step
is logged to ``rounds.log`` there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from .._validation import ensure_count

__all__ = ["grow_in_rounds", "STOP_FILE", "LOG_FILE"]

#: a file of this name in the run folder ends the run after the current round
STOP_FILE = "STOP"
#: the log of finished rounds, appended to
LOG_FILE = "rounds.log"


def grow_in_rounds(
    folder: str | Path, repeats: Iterable[int], total: int, round_size: int, advance: Callable[[int, int], object], unit: str = "iterations",
) -> int:
    """Call ``advance(repeat, target)`` for every repeat, round after round, until ``total``.

    Parameters
    ----------
    folder : path
        The run folder (created if missing); holds ``rounds.log`` and, to stop, ``STOP``.
    repeats : iterable of int
        Repeat indices, advanced in this order within each round.
    total : int
        Length every repeat should reach (iterations, cycles, ...).
    round_size : int
    advance : callable
        ``advance(repeat, target)`` brings ``repeat`` to ``target`` (resuming it); if it
        returns a string, the log records it as what the repeat holds.
    unit : str
        What ``total`` counts, for the log ("reached 500 iterations").

    Returns
    -------
    int
        The target of the last round run.
    """
    folder = Path(folder)
    total, round_size = ensure_count(total, "total"), ensure_count(round_size, "round_size")
    repeats = list(repeats)
    if not repeats:
        raise ValueError("no repeats to run")
    folder.mkdir(parents=True, exist_ok=True)
    target = 0
    with open(folder / LOG_FILE, "a") as log:
        for target in range(round_size, total + round_size, round_size):
            target = min(target, total)
            for repeat in repeats:
                t0 = time.time()
                held = advance(repeat, target)
                what = held if isinstance(held, str) else f"reached {target} {unit}"
                print(f"{time.strftime('%H:%M:%S')} repeat {repeat} {what} ({time.time() - t0:.0f} s)", file=log, flush=True)
            if (folder / STOP_FILE).exists():
                print(f"{STOP_FILE} file found; ending after this round", file=log, flush=True)
                break
    return target
