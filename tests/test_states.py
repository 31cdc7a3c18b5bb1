"""State definitions as text: the whitelisted expression parser, --cv specs and bundled references."""

import json
import math

import mdtraj as md
import numpy as np
import pytest

from openmm_bg.molecules.collective_variables import parse_collective_variable
from openmm_bg.molecules.expressions import parse_expression
from openmm_bg.molecules.states import bundled_reference, evaluate_states, parse_state
from openmm_bg.reference import DATA_DIR


@pytest.fixture
def values():
    rng = np.random.default_rng(7)
    return {"phi": rng.uniform(-np.pi, np.pi, 500), "psi": rng.uniform(-np.pi, np.pi, 500), "d": rng.uniform(0.1, 0.6, 500)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("phi > 0", lambda v: v["phi"] > 0),
        ("phi >= 0.5", lambda v: v["phi"] >= 0.5),
        ("phi > 0.5 and phi < 2.2", lambda v: (v["phi"] > 0.5) & (v["phi"] < 2.2)),
        ("-pi < psi < 0", lambda v: (-np.pi < v["psi"]) & (v["psi"] < 0)),
        ("-1 <= psi < phi <= 2", lambda v: (-1 <= v["psi"]) & (v["psi"] < v["phi"]) & (v["phi"] <= 2)),
        ("d < 0.35 or not (phi < 0)", lambda v: (v["d"] < 0.35) | ~(v["phi"] < 0)),
        ("phi > 30*deg", lambda v: v["phi"] > 30 * np.pi / 180),
        ("phi < -120 * deg or phi > pi - 0.1", lambda v: (v["phi"] < -120 * np.pi / 180) | (v["phi"] > np.pi - 0.1)),
        ("not phi > 0 and psi > 1 or d > 0.5", lambda v: (~(v["phi"] > 0) & (v["psi"] > 1)) | (v["d"] > 0.5)),
        ("(phi + psi) / 2 > -phi * 0.5 - 1e-1", lambda v: (v["phi"] + v["psi"]) / 2 > -v["phi"] * 0.5 - 0.1),
        ("phi - psi - d > 1 - 2 - 3", lambda v: v["phi"] - v["psi"] - v["d"] > 1 - 2 - 3),
        ("  phi>0  ", lambda v: v["phi"] > 0),
    ],
)
def test_expressions_match_numpy(text, expected, values):
    expression = parse_expression(text, values)
    result = expression.evaluate(values)
    assert result.dtype == bool and result.shape == (500,)
    np.testing.assert_array_equal(result, expected(values))
    assert 0 < result.sum() < 500  # the cases are not trivially all-or-nothing


def test_expression_reports_the_variables_it_uses(values):
    assert parse_expression("d < 0.35 or not (phi < 0)", values).variables == ("d", "phi")
    assert parse_expression("-pi < psi < pi", values).variables == ("psi",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("   \t", "is empty"),
        ("phi.real > 0", "attribute access"),
        ("abs(phi) > 1", "function call"),
        ("__import__('os').system('true')", "function call"),
        ("phi[0] > 1", "indexing"),
        ("(lambda: 1)() > 0", "not allowed"),
        ("chi > 0", "unknown name 'chi'"),
        ("phi > x", "unknown name 'x'"),
        ("phi", "is a number, not a condition"),
        ("phi + 1", "is a number, not a condition"),
        ("pi > 3", "uses no collective variable"),
        ("phi > 0 and 3", "joins conditions"),
        ("not phi", "'not' needs a condition"),
        ("(phi > 0) < 1", "comparisons take numbers"),
        ("phi == 0", "'=='"),
        ("phi > 0 & psi > 0", "'&'"),
        ("phi ** 2 > 1", "'**'"),
        ("phi > True", "the constant True"),
        ("phi > 'a'", "the constant 'a'"),
        ("phi > 1j", "the constant 1j"),
        ("phi in (1, 2)", "'in'"),
        ("phi > (", "not a valid expression"),
        ("phi > 0; import os", "not a valid expression"),
        ("phi > 0 if psi else psi", "if-else"),
    ],
)
def test_refused_definitions_raise_value_error_naming_the_problem(text, message, values):
    with pytest.raises(ValueError, match=None) as info:
        parse_expression(text, values, label="state definition for --state-a")
    assert message in str(info.value)
    assert "state definition for --state-a" in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_what_is_known(values):
    with pytest.raises(ValueError) as info:
        parse_state("chi > 0", values, {"low": lambda x: x}, hint="; use --cv")
    text = str(info.value)
    assert "d, phi, psi" in text and "pi, deg" in text and "built-in states: low" in text and text.endswith("; use --cv")


def test_empty_state_names_the_builtin_states_and_an_example(values):
    with pytest.raises(ValueError) as info:
        parse_state("  ", values, {"phi_positive": None, "phi_negative": None}, label="state definition for --state-a")
    assert str(info.value) == (
        "state definition for --state-a is empty; give a built-in state (phi_negative, phi_positive) "
        "or an expression such as 'd > 0'"
    )


def test_a_non_string_definition_is_a_type_error(values):
    with pytest.raises(TypeError):
        parse_state(0.5, values)


def test_parse_state_on_positions_builtin_and_expression():
    traj = md.load(str(DATA_DIR / "ala2-vacuum-300K-md.dcd"), top=str(DATA_DIR / "ala2-vacuum-300K-md.pdb"))[::10]
    _, phi = md.compute_phi(traj)
    _, psi = md.compute_psi(traj)
    phi, psi = phi[:, 0], psi[:, 0]
    calls = {"phi": 0, "psi": 0}

    def counted(name, values):
        def cv(positions):
            assert positions.shape == traj.xyz.shape
            calls[name] += 1
            return values

        return cv

    variables = {"phi": counted("phi", phi), "psi": counted("psi", psi)}
    states = {"right": lambda x: np.asarray(phi) > 0}
    builtin = parse_state(" right ", variables, states)
    assert builtin.expression is None and builtin.definition == "right"
    np.testing.assert_array_equal(builtin(traj.xyz), phi > 0)
    a = parse_state("phi < 0 and -pi < psi < 100*deg", variables, states)
    b = parse_state("phi < 0 and not psi < 100*deg", variables, states)
    in_a, in_b = evaluate_states([a, b], traj.xyz)
    # each collective variable computed once for both states
    assert calls == {"phi": 1, "psi": 1}
    np.testing.assert_array_equal(in_a, (phi < 0) & (psi < 100 * np.pi / 180))
    np.testing.assert_array_equal(in_b, (phi < 0) & (psi >= 100 * np.pi / 180))
    assert in_a.any() and in_b.any()


def test_collective_variables_from_text_match_mdtraj():
    traj = md.load(str(DATA_DIR / "ala2-vacuum-300K-md.dcd"), top=str(DATA_DIR / "ala2-vacuum-300K-md.pdb"))[:50]
    name, chi = parse_collective_variable(" chi = dihedral: 4, 6,8,14", traj.topology)
    assert name == "chi"
    np.testing.assert_allclose(chi(traj.xyz), md.compute_dihedrals(traj, [[4, 6, 8, 14]])[:, 0], atol=1e-6)
    name, d = parse_collective_variable("d=distance:0,5", traj.topology)
    np.testing.assert_allclose(d(traj.xyz), md.compute_distances(traj, [[0, 5]])[:, 0], atol=1e-6)
    box_name, periodic = parse_collective_variable("r=distance:0,21", traj.topology, box_lengths=[0.5, 0.5, 0.5])
    # minimum image in a box smaller than the molecule
    assert np.all(periodic(traj.xyz) <= math.sqrt(3) * 0.25 + 1e-6)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("chi", "is not of the form"),
        ("chi=dihedral", "is not of the form"),
        ("chi=angle:1,2,3", "unknown kind 'angle'"),
        ("chi=dihedral:1,2,3", "takes 4 atom indices, got 3"),
        ("d=distance:0,a", "must be integers"),
        ("d=distance:0,22", "must lie in [0, 22)"),
        ("d=distance:-1,2", "must lie in [0, 22)"),
        ("d=distance:3,3", "distinct"),
        ("pi=distance:0,1", "reserved"),
        ("and=distance:0,1", "reserved"),
        ("phi=distance:0,1", "already defined"),
    ],
)
def test_bad_collective_variable_specs(spec, message):
    top = md.load_topology(str(DATA_DIR / "ala2-vacuum-300K-md.pdb"))
    with pytest.raises(ValueError) as info:
        parse_collective_variable(spec, top, reserved=["phi", "psi"])
    assert message in str(info.value) and spec in str(info.value)


def test_bundled_reference_matches_equivalent_definitions_and_swaps_sign():
    record = json.loads((DATA_DIR / "ala2-vacuum-reference.json").read_text())
    value, error = record["delta_f_kT"], record["error_kT"]
    for a, b in [("phi_negative", "phi_positive"), ("phi < 0", "phi > 0"), ("0 > phi", "phi >= 0"), ("phi<=0", "0<phi")]:
        found = bundled_reference("ala2-vacuum", a, b, temperature=record["temperature_K"])
        assert found is not None, (a, b)
        assert found["delta_f_kT"] == value and found["error_kT"] == error
        swapped = bundled_reference("ala2-vacuum", b, a)
        assert swapped["delta_f_kT"] == -value and swapped["error_kT"] == error
    assert bundled_reference("ala2-vacuum", "phi < 0", "phi > 0.1") is None
    assert bundled_reference("ala2-vacuum", "phi < 0", "psi > 0") is None
    assert bundled_reference("ala2-vacuum", "phi < 0", "phi > 0 and psi > 0") is None
    assert bundled_reference("ala2-vacuum", "phi < 0", "phi > 0", temperature=record["temperature_K"] + 10) is None
    assert bundled_reference("ala2-implicit", "phi_negative", "phi_positive") is None
    assert bundled_reference("no-such-system", "a", "b") is None
