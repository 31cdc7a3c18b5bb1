"""The number of torch intra-op threads a run uses, chosen by timing the run's own work.

Small flows train fastest on one thread when another process shares the cores: on a
busy 2-core machine two threads made the toy training 12 times slower, and ``openmm-bg
train`` 9 times slower; on an idle machine two threads were up to 1.6 times faster.
Neither choice is right everywhere, so :func:`choose_torch_threads` times a short
piece of the actual work at 1 thread and at every available core and keeps the faster.
An explicit override, then ``OMP_NUM_THREADS`` set by the user, come before any timing.

On a busy machine one call of the work at all cores can take seconds (40 times one
thread's time was seen), so a quick check comes first (:func:`parallel_keeps_pace`):
a thread count that falls far behind one thread on many short parallel loops is not
timed on the work at all.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch

__all__ = ["ThreadChoice", "available_cores", "parallel_keeps_pace", "choose_torch_threads", "format_thread_choice", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def available_cores(cpu_max: str | os.PathLike = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may run on: its CPU affinity where the system reports it (else all), capped by a CPU quota.

    A container limited to a share of a larger machine (cgroup v2 ``cpu.max``, e.g.
    ``200000 100000`` for two cores) sees all the machine's cores in its affinity.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = open(cpu_max).read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read: the affinity stands
    return max(1, cores)


@dataclass(frozen=True)
class ThreadChoice:
    """The torch thread count chosen for a run, and why.

    Attributes
    ----------
    n_threads : int
        The chosen number of intra-op threads.
    source : str
        ``"override"`` (the caller's explicit number), ``"OMP_NUM_THREADS"`` (the
        environment), ``"measured"``, ``"one core"`` or ``"only candidate"`` (nothing to
        choose from), or ``"no workload"`` (nothing to time: one thread).
    seconds : dict of int to float
        With ``source == "measured"``: the median seconds of one workload call at each
        thread count timed.
    environment : str
        The value of ``OMP_NUM_THREADS`` when it decided (else empty).
    screened_out : tuple of int
        Thread counts left untimed because they fell behind in :func:`parallel_keeps_pace`.
    """

    n_threads: int
    source: str
    seconds: dict = field(default_factory=dict)
    environment: str = ""
    screened_out: tuple = ()


#: a candidate this many times slower than the fastest in a round is not timed again (nor one
#: this many times slower in the quick check)
_DECISIVE = 2.0


def _positive_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _from_environment(environ: Mapping[str, str]) -> int | None:
    """``OMP_NUM_THREADS`` as a count, None where unset or empty."""
    text = environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    # OpenMP allows a list, one count per nesting level; torch's intra-op pool is the outer level
    first = text.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {text!r}")
    return int(first)


def parallel_keeps_pace(n_threads: int, n_loops: int = 100, slower: float = _DECISIVE) -> bool:
    """Whether ``n_threads`` run many short parallel loops no more than ``slower`` times slower than one thread.

    Each loop is an elementwise exponential of 2^17 numbers, long enough for torch
    to split it among threads and short enough (about 0.3 ms on one core) that a
    thread count sharing its cores with other jobs waits at every loop's end for a
    thread the system has set aside.  One thread's time is its fastest block of ten
    loops, times the blocks: what one thread does when the system lets it run, so
    that a crowded machine, which holds back one thread now and then and several
    threads at every loop, shows as such.  The loops at ``n_threads`` stop as soon as
    they fall behind, so the check takes about 0.1 s.  The thread count is restored.

    Parameters
    ----------
    n_threads : int
    n_loops : int
        Loops at each thread count, in blocks of ten.
    slower : float
        How many times one thread's time the loops at ``n_threads`` may take.
    """
    x = torch.rand(1 << 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = torch.empty_like(x)
    n_blocks = max(1, n_loops // 10)
    previous = torch.get_num_threads()

    def blocks(n: int, limit: float) -> list[float] | None:
        """Seconds of each block of ten loops at ``n`` threads; None once they pass ``limit`` in all."""
        torch.set_num_threads(n)
        torch.exp(x, out=out)  # the thread pool at this size, started
        start, times = time.perf_counter(), []
        for _ in range(n_blocks):
            block = time.perf_counter()
            for _ in range(10):
                torch.exp(x, out=out)
            times.append(time.perf_counter() - block)
            if time.perf_counter() - start > limit:
                return None
        return times

    try:
        one = n_blocks * min(blocks(1, float("inf")))
        return blocks(n_threads, slower * one) is not None
    finally:
        torch.set_num_threads(previous)


def choose_torch_threads(
    workload: Callable[[], object] | None,
    *,
    override: int | None = None,
    candidates: Sequence[int] | None = None,
    repeats: int = 3,
    max_seconds: float = 1.0,
    margin: float = 0.05,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    screen: Callable[[int], bool] | None = parallel_keeps_pace,
) -> ThreadChoice:
    """Choose the number of torch intra-op threads for a run: given, from the environment, or by timing.

    In order: ``override`` when given; else ``OMP_NUM_THREADS`` when set; else the
    fastest of ``candidates`` (1 thread and all available cores) on ``workload``.
    Candidates above one thread that fail ``screen`` are not timed on the workload.
    The workload runs once to warm up, then in up to ``repeats`` rounds, alternating
    the order, once at each candidate, timed.  The rounds stop after one round at
    least, once one candidate is more than twice as fast as another, or before the
    next round would pass ``max_seconds``: a workload should take well under
    ``max_seconds / (1 + len(candidates))`` on one thread.
    The thread count is restored afterwards: apply the choice with :func:`torch_threads`.

    Parameters
    ----------
    workload : callable or None
        A short piece of the run's own work, e.g. one training step of the actual model
        at the actual batch size; called with no arguments.  None: nothing to time,
        one thread (unless given or set in the environment).
    override : int, optional
        The caller's explicit count; wins over everything else.
    candidates : sequence of int, optional
        Thread counts to time (default 1 and :func:`available_cores`).
    repeats : int
        Most timed calls per candidate; the median counts.
    max_seconds : float
        Time budget of the measurement (warm-up included), s.
    margin : float
        More threads must save more than this fraction of the time of fewer: they
        also take cores from whatever else runs.
    environ : mapping, optional
        The environment to read ``OMP_NUM_THREADS`` from (default ``os.environ``).
    clock : callable
        Seconds (monotonic); injectable for tests.
    screen : callable or None
        ``screen(n) -> bool``: whether ``n`` threads are worth timing on the workload
        (default :func:`parallel_keeps_pace`); None times every candidate.

    Returns
    -------
    ThreadChoice
    """
    if override is not None:
        return ThreadChoice(_positive_count(override, "the number of torch threads"), "override")
    environ = os.environ if environ is None else environ
    from_environment = _from_environment(environ)
    if from_environment is not None:
        return ThreadChoice(from_environment, "OMP_NUM_THREADS", environment=environ["OMP_NUM_THREADS"])
    if workload is None:
        return ThreadChoice(1, "no workload")
    counts = sorted({1, available_cores()} if candidates is None else {_positive_count(n, "each candidate thread count") for n in candidates})
    if len(counts) == 1:
        return ThreadChoice(counts[0], "one core" if candidates is None else "only candidate")
    _positive_count(repeats, "repeats")
    if not max_seconds > 0 or not 0 <= margin < 1:
        raise ValueError(f"max_seconds must be positive and margin in [0, 1), got {max_seconds!r} and {margin!r}")

    def timed(n: int) -> float:
        torch.set_num_threads(n)
        start = clock()
        workload()
        return clock() - start

    screened_out = tuple(n for n in counts if n > 1 and screen is not None and not screen(n))
    counts = [n for n in counts if n not in screened_out]
    if len(counts) == 1:
        return ThreadChoice(counts[0], "measured", screened_out=screened_out)
    previous = torch.get_num_threads()
    started = clock()
    times: dict[int, list[float]] = {n: [] for n in counts}
    try:
        timed(counts[0])  # first calls pay for lazy set-up and allocation; a new thread count costs far less
        for round_ in range(repeats):
            for n in counts if round_ % 2 == 0 else counts[::-1]:
                times[n].append(timed(n))
            last = [times[n][-1] for n in counts]
            # a clear winner stays one: on a busy machine the slow candidate can cost seconds a call
            if max(last) > _DECISIVE * min(last):
                break
            # stop before the next round would pass the budget
            if clock() - started + sum(last) > max_seconds:
                break
    finally:
        torch.set_num_threads(previous)
    seconds = {n: statistics.median(values) for n, values in times.items()}
    best = counts[0]
    for n in counts[1:]:
        if seconds[n] < (1.0 - margin) * seconds[best]:
            best = n
    return ThreadChoice(best, "measured", seconds, screened_out=screened_out)


def format_thread_choice(choice: ThreadChoice, per: str = "step", override_label: str = "requested") -> str:
    """One line for a command to print, e.g. ``torch threads: 1 (measured: 1 thread 12 ms/step, 2 threads 95 ms/step)``.

    Parameters
    ----------
    choice : ThreadChoice
    per : str
        What one workload call is (``"step"``, ``"batch"``).
    override_label : str
        How an override is described (a command passes its option, ``"--threads"``).
    """
    if choice.source == "measured":
        parts = [f"{n} thread{'s' * (n != 1)} {1000 * s:.0f} ms/{per}" for n, s in sorted(choice.seconds.items())]
        parts += [f"{n} threads over {_DECISIVE:g}x slower than 1 in a quick check" for n in choice.screened_out]
        why = "measured: " + ", ".join(parts)
    elif choice.source == "override":
        why = override_label
    elif choice.source == "OMP_NUM_THREADS":
        why = f"OMP_NUM_THREADS={choice.environment}"
    elif choice.source == "one core":
        why = "1 core available"
    elif choice.source == "only candidate":
        why = "the only candidate"
    else:
        why = "nothing to time here"
    return f"torch threads: {choice.n_threads} ({why})"
