"""Parent side of the OpenMM energy bridge: the worker pool, its deadlines and errors.

:class:`WorkerPool` submits chunks of positions to any
:class:`concurrent.futures.Executor`, waits with a deadline, and turns a hung
or dead worker into a :class:`WorkerTimeoutError` or :class:`WorkerCrashedError`.
When it owns its executor (a local ``spawn`` process pool) it then kills the
workers, and the next call starts fresh ones; it also moves positions and
forces through shared memory instead of pickling them.  The worker side (one
Context per worker, the token cache) is :mod:`openmm_bg.energies._worker`; its
public names are re-exported here.

Workers are started with ``spawn``: a forked CPU-platform Context can hang.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import multiprocessing
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory

import numpy as np

from .._validation import ensure_count
from ._worker import ChunkResult, ContextEvaluator, ContextSpec, SharedChunk, evaluate_task, install_specs

__all__ = [
    "ContextSpec",
    "SharedChunk",
    "ContextEvaluator",
    "ChunkResult",
    "evaluate_task",
    "install_specs",
    "WorkerError",
    "WorkerTimeoutError",
    "WorkerCrashedError",
    "WorkerPool",
]


class WorkerError(RuntimeError):
    """A batch could not be evaluated by the workers."""


class WorkerTimeoutError(WorkerError, TimeoutError):
    """The workers did not return within the timeout."""


class WorkerCrashedError(WorkerError):
    """A worker process died while evaluating."""


_CRASH_MESSAGE = (
    "an energy worker process died (killed, out of memory, or crashed in OpenMM); "
    "the pool has been restarted and the batch was not evaluated"
)

_live_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


def _close_live_pools() -> None:
    for pool in list(_live_pools):
        pool.close()


# concurrent.futures joins its pools' threads in a threading-atexit hook, and that
# join waits forever on a hung worker.  Hooks there run last-registered-first, so
# registering ours after importing concurrent.futures.process kills the workers first.
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_close_live_pools)
else:  # pragma: no cover - CPython always has it
    atexit.register(_close_live_pools)


def _processes_of(executor: cf.Executor | None) -> list:
    # ProcessPoolExecutor has no public way to reach or kill its workers before Python 3.14.
    return list((getattr(executor, "_processes", None) or {}).values())


class WorkerPool:
    """Submits chunks to an executor with a deadline; owns a local spawn pool by default.

    Parameters
    ----------
    n_workers : int
        Processes of the local pool, or, with ``executor``, the number of chunks
        a batch is split into.  At least 1.
    executor : concurrent.futures.Executor, optional
        An existing executor (for dask, ``client.get_executor()``).  It is never
        shut down or restarted by the pool.  If omitted, the pool starts its own
        :class:`~concurrent.futures.ProcessPoolExecutor` with the ``spawn``
        start method on first use, and kills and replaces it after a timeout or
        a crash.
    specs : dict of token -> ContextSpec, optional
        Preloaded into the local pool's workers when they start.
    """

    def __init__(self, n_workers: int, executor: cf.Executor | None = None, specs: dict[str, ContextSpec] | None = None):
        n_workers = ensure_count(n_workers, "n_workers")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
        self.n_workers = n_workers
        self.owns_executor = executor is None
        self._executor = executor
        self._specs = dict(specs or {})
        self._closed = False
        # one batch at a time: calls share the shared-memory block
        self._lock = threading.Lock()
        self._block: shared_memory.SharedMemory | None = None
        _live_pools.add(self)

    @property
    def executor(self) -> cf.Executor:
        """The executor tasks go to; a local pool is started here on first use."""
        if self._closed:
            raise RuntimeError("this worker pool is closed")
        if self._executor is None:
            self._executor = cf.ProcessPoolExecutor(
                max_workers=self.n_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=install_specs,
                initargs=(self._specs,),
            )
        return self._executor

    def worker_pids(self) -> list[int]:
        """Process ids of the local pool's live workers (empty for an external executor)."""
        if not self.owns_executor or self._executor is None:
            return []
        return sorted(proc.pid for proc in _processes_of(self._executor) if proc.is_alive())

    def evaluate(
        self, token: str, spec: ContextSpec, positions: np.ndarray, timeout: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[ChunkResult]]:
        """Energies and forces of a batch, split into ``n_workers`` chunks, within ``timeout`` seconds.

        A local pool moves positions and forces through one shared-memory block
        per call; an external executor gets the chunks pickled.

        Parameters
        ----------
        token : str
            Identifies the Context in the workers.
        spec : ContextSpec
            Sent to a worker only when it asks for it.
        positions : ndarray, shape (batch, n_atoms, 3), float64, nm
        timeout : float, s
            Deadline for the whole call, including any worker start-up.

        Returns
        -------
        energies : ndarray, shape (batch,), float64, kJ/mol
        forces : ndarray, shape (batch, n_atoms, 3), float64, kJ/mol/nm
        finite : ndarray, shape (batch,), bool
        chunks : list of ChunkResult
            Per-chunk bookkeeping (worker pid, Context built, seconds).

        Raises
        ------
        WorkerTimeoutError, WorkerCrashedError, WorkerError
            After a timeout or a crash the local pool has been killed already
            and the next call starts fresh workers.
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        batch, n_atoms = positions.shape[:2]
        if batch == 0:
            return np.zeros(0), np.zeros(positions.shape), np.zeros(0, dtype=bool), []
        bounds = np.linspace(0, batch, min(self.n_workers, batch) + 1).round().astype(int)
        if not self.owns_executor:
            results = self.run(token, spec, [positions[a:b] for a, b in zip(bounds[:-1], bounds[1:])], timeout)
            forces = np.concatenate([r.forces for r in results])
        else:
            with self._lock:
                block = self._shared_block(2 * positions.nbytes)
                arrays = np.ndarray((2,) + positions.shape, dtype=np.float64, buffer=block.buf)
                try:
                    arrays[0] = positions
                    chunks = [SharedChunk(block.name, batch, n_atoms, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
                    results = self.run(token, spec, chunks, timeout)
                    forces = arrays[1].copy()
                finally:
                    # a block cannot be closed while a view exports its buffer, and a
                    # traceback would keep this frame's view alive
                    del arrays
        energies = np.concatenate([r.energies for r in results])
        finite = np.concatenate([r.finite for r in results])
        return energies, forces, finite, results

    def _shared_block(self, nbytes: int) -> shared_memory.SharedMemory:
        if self._block is None or self._block.size < nbytes:
            self._release_block()
            self._block = shared_memory.SharedMemory(create=True, size=nbytes)
        return self._block

    def _release_block(self) -> None:
        block, self._block = self._block, None
        if block is not None:
            block.unlink()
            try:
                block.close()
            except BufferError:
                pass  # someone still holds a view; the mapping goes away with it

    def run(self, token: str, spec: ContextSpec, chunks: list[np.ndarray | SharedChunk], timeout: float) -> list[ChunkResult]:
        """Evaluate chunks in parallel, within ``timeout`` seconds in all.

        Parameters
        ----------
        token : str
        spec : ContextSpec
            Sent to a worker only when it asks for it.
        chunks : list of (ndarray, shape (batch_i, n_atoms, 3), float64, nm) or SharedChunk
        timeout : float, s
            Deadline for the whole call, including any worker start-up.

        Returns
        -------
        list of ChunkResult, in the order of ``chunks``

        Raises
        ------
        WorkerTimeoutError, WorkerCrashedError, WorkerError
            After a timeout or a crash the local pool has been killed already
            and the next call starts fresh workers.
        """
        deadline = time.monotonic() + timeout
        results: list[ChunkResult | None] = [None] * len(chunks)
        pending: dict[cf.Future, int] = {}
        try:
            for i, chunk in enumerate(chunks):
                pending[self._submit(token, chunk, None)] = i
            while pending:
                done, _ = cf.wait(pending, timeout=max(0.0, deadline - time.monotonic()), return_when=cf.FIRST_COMPLETED)
                if not done:
                    raise WorkerTimeoutError(self._timeout_message(timeout, len(pending), len(chunks)))
                for future in done:
                    i = pending.pop(future)
                    result = self._result(future)
                    if result is None:
                        pending[self._submit(token, chunks[i], spec)] = i
                    else:
                        results[i] = result
        except BaseException:
            # Whatever interrupted the call (a timeout, a crash, Ctrl-C), no worker may be left busy with it.
            for future in pending:
                future.cancel()
            self.restart()
            raise
        return results  # type: ignore[return-value]

    def _submit(self, token: str, chunk: np.ndarray | SharedChunk, spec: ContextSpec | None) -> cf.Future:
        try:
            return self.executor.submit(evaluate_task, token, chunk, spec)
        except BrokenProcessPool as exc:
            # a worker died between calls; the executor refuses new work until replaced
            raise WorkerCrashedError(_CRASH_MESSAGE) from exc

    def _result(self, future: cf.Future) -> ChunkResult | None:
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise WorkerCrashedError(_CRASH_MESSAGE) from exc
        except cf.CancelledError as exc:
            raise WorkerCrashedError("an energy evaluation task was cancelled by the executor; the batch was not evaluated") from exc
        except Exception as exc:
            raise WorkerError(f"an energy worker raised {type(exc).__name__}: {exc}") from exc

    def _timeout_message(self, timeout: float, n_pending: int, n_chunks: int) -> str:
        what = "the local worker pool was killed and is restarted on the next call" if self.owns_executor else (
            "the external executor was left running; restart its workers yourself if one is stuck"
        )
        return (
            f"{n_pending} of {n_chunks} energy chunks did not finish within the timeout of {timeout:g} s "
            f"(a worker hung, or the batch is too large for the timeout); {what}"
        )

    def restart(self) -> None:
        """Kill the local pool's workers; the next call starts new ones.  No-op for an external executor."""
        if not self.owns_executor or self._executor is None:
            return
        executor, self._executor = self._executor, None
        processes = _processes_of(executor)
        for proc in processes:
            if proc.is_alive():
                proc.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.join(timeout=5.0)

    def close(self) -> None:
        """Stop the local pool's workers (idle ones exit cleanly, busy ones are killed).  Idempotent."""
        if self._closed:
            return
        self._closed = True
        _live_pools.discard(self)
        self._release_block()
        if not self.owns_executor or self._executor is None:
            return
        executor, self._executor = self._executor, None
        processes = _processes_of(executor)
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)
