"""The OpenMM platform of the user's own system is chosen by timing it (issue 17), and a name given is taken as given."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import pytest

from openmm_bg.molecules import load_system
from openmm_bg.molecules.platforms import (
    DEFAULT_CANDIDATES,
    PlatformChoice,
    fastest_platform,
    installed_platforms,
    select_platform,
    time_energy_and_forces,
)


def _ala2_files() -> tuple[Path, Path]:
    import openmmtools

    folder = Path(os.path.dirname(openmmtools.__file__)) / "data" / "alanine-dipeptide-gbsa"
    return folder / "alanine-dipeptide.crd", folder / "alanine-dipeptide.prmtop"


CRD, PRMTOP = _ala2_files()


@pytest.fixture(scope="module")
def ala2():
    """Alanine dipeptide with OBC1 (System, positions in nm): CPU is several times faster than Reference here."""
    positions = app.AmberInpcrdFile(str(CRD)).getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    return app.AmberPrmtopFile(str(PRMTOP)).createSystem(implicitSolvent=app.OBC1), np.asarray(positions)


class FakeTimer:
    """Seconds per call from a table, recording what was timed; a name mapped to an exception raises it."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, system, positions, platform, evaluations, box_vectors=None):
        self.calls.append((platform, evaluations))
        value = self.table[platform]
        if isinstance(value, Exception):
            raise value
        return value


def test_the_fastest_of_the_timings_is_chosen(ala2):
    timer = FakeTimer({"Reference": 3e-3, "CPU": 1e-3})
    choice = fastest_platform(*ala2, ["Reference", "CPU"], evaluations=4, timer=timer)
    assert choice.name == "CPU" and choice.measured
    assert list(choice.seconds) == ["CPU", "Reference"] and choice.seconds["Reference"] == 3e-3
    assert timer.calls == [("Reference", 4), ("CPU", 4)]
    assert choice.summary() == "OpenMM platform CPU: the fastest in a timing of energy and forces (CPU 1 ms, Reference 3 ms per call)"
    # the other way round, and a tie keeps the candidates' order
    assert fastest_platform(*ala2, ["Reference", "CPU"], timer=FakeTimer({"Reference": 1e-5, "CPU": 2e-4})).name == "Reference"
    assert fastest_platform(*ala2, ["CPU", "Reference"], timer=FakeTimer({"Reference": 1e-3, "CPU": 1e-3})).name == "CPU"


def test_a_platform_given_by_name_is_not_timed(ala2, caplog):
    timer = FakeTimer({})
    with caplog.at_level(logging.INFO, logger="openmm_bg.molecules.platforms"):
        choice = select_platform("Reference", *ala2, timer=timer)
    assert choice == PlatformChoice("Reference") and not choice.measured and timer.calls == []
    assert caplog.messages == ["OpenMM platform Reference: chosen by name"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openmm_bg.molecules.platforms"):
        choice = select_platform("auto", *ala2, candidates=["Reference", "CPU"], timer=FakeTimer({"Reference": 2.0, "CPU": 1.0}))
    assert choice.name == "CPU" and caplog.messages == [choice.summary()]


def test_only_installed_platforms_are_timed_by_default(ala2):
    timer = FakeTimer({name: 1e-3 for name in DEFAULT_CANDIDATES})
    fastest_platform(*ala2, timer=timer)
    installed = installed_platforms()
    assert [name for name, _ in timer.calls] == [name for name in DEFAULT_CANDIDATES if name in installed]
    assert {"Reference", "CPU"} <= set(installed)  # the development machine's; CUDA/OpenCL only where their plugins load


def test_a_candidate_that_cannot_run_is_left_out_and_named(ala2):
    timer = FakeTimer({"Reference": 2e-3, "CPU": openmm.OpenMMException("No compatible device")})
    choice = fastest_platform(*ala2, ["Reference", "CPU"], timer=timer)
    assert choice.name == "Reference" and choice.failed == {"CPU": "No compatible device"}
    assert choice.summary().endswith("(Reference 2 ms per call; CPU failed: No compatible device)")
    with pytest.raises(ValueError, match="no candidate platform could evaluate the System: Reference: broken"):
        fastest_platform(*ala2, ["Reference"], timer=FakeTimer({"Reference": openmm.OpenMMException("broken")}))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, x: select_platform("GPU", s, x), "unknown OpenMM platform 'GPU'; choose one of auto, Reference, CPU"),
        (lambda s, x: fastest_platform(s, x, ["Reference", "auto"]), "unknown OpenMM platform 'auto'; choose one of Reference, CPU"),
        (lambda s, x: fastest_platform(s, x, []), "no candidate platforms to time"),
        (lambda s, x: fastest_platform(s, x, evaluations=0), "evaluations must be an integer >= 1, got 0"),
        (lambda s, x: load_system(CRD, PRMTOP, implicit_solvent="OBC1", platform="cpu"), "unknown OpenMM platform 'cpu'; choose one of auto"),
    ],
)
def test_bad_platform_names_say_what_is_valid(ala2, call, message):
    with pytest.raises(ValueError, match=message):
        call(*ala2)


def test_the_real_timing_is_cheap_and_finds_cpu_faster_with_implicit_solvent(ala2):
    seconds = time_energy_and_forces(*ala2, "Reference", 3)
    assert 0 < seconds < 1
    start = time.perf_counter()
    choice = fastest_platform(*ala2, ["Reference", "CPU"])
    assert time.perf_counter() - start < 1.0  # the probe costs well under a second for alanine dipeptide
    # OBC on Reference takes several times as long as on CPU (4 ms against 0.6 ms on the 2-core machine)
    assert choice.name == "CPU" and choice.seconds["Reference"] > 2 * choice.seconds["CPU"]


def test_load_system_times_by_default_and_takes_a_name_as_given(caplog):
    with caplog.at_level(logging.INFO, logger="openmm_bg.molecules.platforms"):
        mol = load_system(CRD, PRMTOP, implicit_solvent="OBC1")
    assert mol.platform in installed_platforms()
    assert caplog.messages == [m for m in caplog.messages if m.startswith(f"OpenMM platform {mol.platform}: the fastest in a timing")]
    assert len(caplog.messages) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openmm_bg.molecules.platforms"):
        assert load_system(CRD, PRMTOP, implicit_solvent="OBC1", platform="Reference").platform == "Reference"
    assert caplog.messages == ["OpenMM platform Reference: chosen by name"]


def test_registered_systems_keep_their_recommended_platform():
    from openmm_bg.molecules import get_system
    from openmm_bg.molecules.loading import resolve_system

    assert resolve_system(system="ala2-implicit", platform="auto").platform == get_system("ala2-implicit").platform == "CPU"
