"""OpenMMEnergy through worker processes: equality with in-process, crashes, hangs, dask, exit."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import shared_memory

import numpy as np
import openmm
import pytest
from openmm import unit
from openmmtools import testsystems

from openmm_bg.energies import OpenMMEnergy, WorkerCrashedError, WorkerTimeoutError
from openmm_bg.energies import workers


def alive(pid):
    """True while ``pid`` runs; a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between open and read
        return False


def wait_gone(pids, seconds=10.0):
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


@pytest.fixture(scope="module")
def vacuum():
    return testsystems.AlanineDipeptideVacuum(constraints=None)


@pytest.fixture(scope="module")
def batch(vacuum):
    x0 = np.asarray(vacuum.positions.value_in_unit(unit.nanometer))
    x = x0 + 0.003 * np.random.default_rng(0).standard_normal((40,) + x0.shape)
    x[17, 3, 1] = np.nan  # failures must come back flagged through the workers too
    return x


def assert_same(a, b):
    np.testing.assert_array_equal(a.u, b.u)
    np.testing.assert_array_equal(a.forces, b.forces)
    np.testing.assert_array_equal(a.finite, b.finite)


def test_evaluate_task_protocol(vacuum, batch):
    # in this process: no spec -> None, a spec builds once, the cache then serves positions alone
    spec = workers.ContextSpec(openmm.XmlSerializer.serialize(vacuum.system), "Reference", {})
    token = "test-protocol"
    assert workers.evaluate_task(token, batch[:3]) is None
    first = workers.evaluate_task(token, batch[:3], spec)
    again = workers.evaluate_task(token, batch[:3])
    assert first.built and not again.built and first.pid == again.pid == os.getpid()
    np.testing.assert_array_equal(first.energies, again.energies)
    workers.install_specs({"test-preloaded": spec})
    assert workers.evaluate_task("test-preloaded", batch[:3]).built
    # the shared-memory form: rows 1:3 of a block holding positions and, afterwards, forces
    block = shared_memory.SharedMemory(create=True, size=2 * batch[:3].nbytes)
    try:
        arrays = np.ndarray((2, 3, 22, 3), dtype=np.float64, buffer=block.buf)
        arrays[0] = batch[:3]
        shared = workers.evaluate_task(token, workers.SharedChunk(block.name, 3, 22, 1, 3))
        assert shared.forces is None
        np.testing.assert_array_equal(shared.energies, first.energies[1:3])
        np.testing.assert_array_equal(arrays[1, 1:3], first.forces[1:3])
        del arrays
    finally:
        block.unlink()


@pytest.mark.timeout(120)
def test_one_and_two_workers_equal_in_process(vacuum, batch):
    reference = OpenMMEnergy(vacuum.system, 300.0, platform="Reference").evaluate(batch)
    assert reference.finite.sum() == len(batch) - 1
    for n_workers in (1, 2):
        with OpenMMEnergy(vacuum.system, 300.0, platform="Reference", n_workers=n_workers, timeout=120) as energy:
            assert_same(energy.evaluate(batch), reference)
            pids = energy.pool.worker_pids()
            assert_same(energy.evaluate(batch), reference)
            # workers and their Contexts are reused: no new process, at most one Context per worker
            assert energy.pool.worker_pids() == pids and 1 <= len(pids) <= n_workers
            assert 1 <= energy.n_contexts_built <= n_workers
        assert wait_gone(pids), "close() left worker processes running"


@pytest.mark.timeout(120)
def test_cpu_platform_workers_equal_in_process_with_one_thread():
    t = testsystems.AlanineDipeptideImplicit(constraints=None)
    x0 = np.asarray(t.positions.value_in_unit(unit.nanometer))
    x = x0 + 0.003 * np.random.default_rng(1).standard_normal((8,) + x0.shape)
    reference = OpenMMEnergy(t.system, 300.0, platform="CPU", platform_properties={"Threads": "1"}).evaluate(x)
    with OpenMMEnergy(t.system, 300.0, platform="CPU", n_workers=2, timeout=120) as energy:
        assert energy.platform_properties == {"Threads": "1"}
        assert_same(energy.evaluate(x), reference)


@pytest.mark.timeout(120)
def test_killed_worker_raises_and_pool_recovers(vacuum, batch):
    reference = OpenMMEnergy(vacuum.system, 300.0, platform="Reference").evaluate(batch)
    big = np.concatenate([batch] * 2000)  # about 3 s of work for one worker
    with OpenMMEnergy(vacuum.system, 300.0, platform="Reference", n_workers=1, timeout=120) as energy:
        energy.evaluate(batch[:2])
        # killed between calls
        (pid,) = energy.pool.worker_pids()
        os.kill(pid, signal.SIGKILL)
        assert wait_gone([pid])
        with pytest.raises(WorkerCrashedError, match="died"):
            energy.evaluate(batch)
        assert_same(energy.evaluate(batch), reference)
        # killed in the middle of a call
        (pid,) = energy.pool.worker_pids()
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        start = time.monotonic()
        with pytest.raises(WorkerCrashedError, match="died"):
            energy.evaluate(big)
        assert time.monotonic() - start < 30.0
        assert_same(energy.evaluate(batch), reference)
        assert pid not in energy.pool.worker_pids()


@pytest.mark.timeout(120)
def test_hung_worker_times_out_and_pool_recovers(vacuum, batch):
    reference = OpenMMEnergy(vacuum.system, 300.0, platform="Reference").evaluate(batch)
    with OpenMMEnergy(vacuum.system, 300.0, platform="Reference", n_workers=1, timeout=120) as energy:
        energy.evaluate(batch[:2])
        (pid,) = energy.pool.worker_pids()
        os.kill(pid, signal.SIGSTOP)  # the only worker hangs
        energy.timeout = 2.0
        start = time.monotonic()
        with pytest.raises(WorkerTimeoutError, match="within the timeout of 2 s"):
            energy.evaluate(batch)
        elapsed = time.monotonic() - start
        assert 2.0 <= elapsed < 10.0, elapsed
        assert wait_gone([pid]), "the hung worker was not killed"
        energy.timeout = 120.0
        assert_same(energy.evaluate(batch), reference)


@pytest.mark.timeout(180)
def test_dask_local_cluster_executor(vacuum, batch):
    distributed = pytest.importorskip("distributed")
    reference = OpenMMEnergy(vacuum.system, 300.0, platform="Reference").evaluate(batch)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            energy = OpenMMEnergy(
                vacuum.system, 300.0, platform="Reference", n_workers=2, executor=client.get_executor(pure=False), timeout=120
            )
            assert_same(energy.evaluate(batch), reference)
            assert_same(energy.evaluate(batch), reference)
            # the spec crosses to each dask worker at most once, positions alone afterwards
            assert 1 <= energy.n_contexts_built <= 2
            energy.close()  # must leave the user's executor alone
            assert client.submit(sum, [1, 2]).result() == 3
            # the default executor hashes arguments into task keys (pure=True); results must not change
            default = OpenMMEnergy(vacuum.system, 300.0, platform="Reference", n_workers=2, executor=client.get_executor(), timeout=120)
            assert_same(default.evaluate(batch), reference)
            assert_same(default.evaluate(batch), reference)


@pytest.mark.timeout(120)
def test_no_worker_outlives_the_interpreter(tmp_path):
    # the parent exits without close() while its only worker is hung: the exit must not hang
    # and must not leave the worker behind
    script = tmp_path / "leave.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal
            import numpy as np
            from openmmtools import testsystems
            from openmm import unit
            from openmm_bg.energies import OpenMMEnergy

            if __name__ == "__main__":
                t = testsystems.AlanineDipeptideVacuum(constraints=None)
                x = np.asarray(t.positions.value_in_unit(unit.nanometer))[None]
                energy = OpenMMEnergy(t.system, 300.0, platform="Reference", n_workers=1, timeout=120)
                energy.evaluate(x)
                (pid,) = energy.pool.worker_pids()
                print(pid, flush=True)
                os.kill(pid, signal.SIGSTOP)
            """
        )
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[-1])
    assert wait_gone([pid]), f"worker {pid} outlived its parent"
    assert time.monotonic() - start < 60.0


def test_worker_module_does_not_import_torch():
    # spawned workers import this module; pulling torch in would cost seconds per worker start
    import subprocess
    import sys

    code = "import sys, openmm_bg.energies._worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
