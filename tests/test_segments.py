"""Tempering runs carried across sessions as committed segments: export, join, continue."""

import numpy as np
import pytest

from openmm_bg.simulation.segments import check_settings, committed_segments, export_segment, read_segments, segment_path
from openmm_bg.simulation.tempering import read_parallel_tempering, run_parallel_tempering
from test_tempering import double_well

TEMPERATURES = [300.0, 600.0, 1200.0]
CVS = {"x": lambda xyz: xyz[:, 0, 0], "r": lambda xyz: np.linalg.norm(xyz[:, 0], axis=1)}


def grow(tmp_path, segment, positions, n_iterations, seed):
    storage = tmp_path / f"seg{segment}.nc"
    run_parallel_tempering(double_well(), positions, TEMPERATURES, storage, n_iterations, steps_per_iteration=20,
                           seed=seed, progress=False, integrator="hmc", trajectory_steps=10, timestep=0.002)
    export_segment(storage, segment_path(tmp_path / "results", 0, segment), CVS, segment=segment, seed=seed,
                   force_evaluations_per_iteration=3 * 26)
    return storage


def test_segments_join_into_one_chain_that_continues_where_the_last_ended(tmp_path):
    first = grow(tmp_path, 0, np.array([[-0.1, 0.0, 0.0]]), 12, seed=1)
    data = read_parallel_tempering(first)
    with np.load(segment_path(tmp_path / "results", 0, 0)) as f:
        start = f["final_positions"].astype(np.float64)
        # per-state rows: the energy and the CVs of the replica in each state
        xyz = data.by_state(data.positions)
        np.testing.assert_allclose(f["cv_x"].astype(np.float64), xyz[:, :, 0, 0], atol=1e-3)
        assert f["potential_energy"].shape == (13, 3) and f["potential_energy"].dtype == np.float32
    np.testing.assert_allclose(start, xyz[-1], atol=1e-6)
    second = grow(tmp_path, 1, start, 8, seed=2)
    np.testing.assert_allclose(read_parallel_tempering(second).by_state(read_parallel_tempering(second).positions)[0], start, atol=1e-6)

    assert committed_segments(tmp_path / "results", 0) == 2
    joined = read_segments(tmp_path / "results", 0)
    # segment 0 keeps its start; segment 1 drops its start (the end of segment 0)
    assert joined.potential_energy.shape == (13 + 8, 3) and joined.iterations == 20
    assert joined.force_evaluations == 20 * 3 * 26 and joined.seeds == [1, 2]
    np.testing.assert_allclose(joined.collective_variables["r"], np.abs(joined.collective_variables["r"]))
    second_data = read_parallel_tempering(second)
    own = np.take_along_axis(second_data.reduced_potentials, second_data.replica_states[:, :, None], axis=2)[:, :, 0]
    kT = 0.00831446261815324 * np.asarray(TEMPERATURES)
    np.testing.assert_allclose(joined.potential_energy[13:], second_data.by_state(own * kT[second_data.replica_states])[1:], rtol=1e-5, atol=1e-4)


def test_segments_refuse_what_does_not_join(tmp_path):
    with pytest.raises(OSError, match="segment0.npz"):
        read_segments(tmp_path, 0)
    grow(tmp_path, 0, np.array([[-0.1, 0.0, 0.0]]), 3, seed=1)
    path = segment_path(tmp_path / "results", 0, 0)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(segment_path(tmp_path / "results", 0, 1), **dict(arrays, segment=np.int64(1), temperatures=arrays["temperatures"] + 1))
    with pytest.raises(ValueError, match="other temperatures"):
        read_segments(tmp_path / "results", 0)
    np.savez(segment_path(tmp_path / "results", 0, 1), **arrays)
    with pytest.raises(ValueError, match="says it is segment 0"):
        read_segments(tmp_path / "results", 0)

    check_settings(tmp_path / "s", {"seed": 1, "steps": 500, "out": "a"}, ["seed", "steps"])
    check_settings(tmp_path / "s", {"seed": 1, "steps": 500, "out": "b"}, ["seed", "steps"])
    with pytest.raises(ValueError, match=r"steps=500 \(asked 250\)"):
        check_settings(tmp_path / "s", {"seed": 1, "steps": 250}, ["seed", "steps"])
