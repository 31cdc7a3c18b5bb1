"""Property-based fuzzing of what a user types or hands over (issue 17).

Four entry points get generated inputs: near-valid ones (a valid input with tokens
dropped, swapped, duplicated or replaced by junk: unicode, huge numbers, nan/inf, deep
nesting, whitespace, nothing at all) and random text or bytes.

* the state-expression parser (:func:`openmm_bg.molecules.expressions.parse_expression`,
  and :func:`openmm_bg.molecules.states.parse_state`, which ``free-energy --state-a`` calls);
* the CV specifications (:func:`openmm_bg.molecules.collective_variables.parse_collective_variable`,
  ``free-energy --cv``, and the named CVs of a peptide in expressions);
* the generator checkpoint loader (:func:`openmm_bg.generator.load_generator`, and
  :func:`openmm_bg.sampling.load_checkpoint`, which ``sample`` and ``free-energy`` call):
  truncated, bit-flipped and foreign files;
* the YAML settings (``TrainingConfig.from_yaml`` for ``train --config``,
  ``DemoSettings.from_yaml`` for ``demo --config``).

The property: the call returns a well-formed result, or raises ``ValueError`` with a
non-empty one-line message; never another exception, never a hang (each example has a
deadline).  Results are checked against independent statements of what is valid: a
parsed expression against Python's own evaluation of the same text, a loaded damaged
checkpoint against the undamaged one, settings against the ranges their docstrings state.

The default run draws ``FAST_EXAMPLES`` inputs per target; ``--runslow`` draws
``SLOW_EXAMPLES`` (at least 1000, counted and asserted).  Draws are derandomised and no
example database is written, so every run sees the same inputs.  The last section holds
a plain regression test for each mishandled input the fuzzing found.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import pickle
import re
import string
import struct
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openmm_bg.cli import main
from openmm_bg.generator.checkpoints import CHECKPOINT_FORMAT, load_generator, save_generator
from openmm_bg.generator.model import BoltzmannGenerator
from openmm_bg.generator.recipes import realnvp_generator
from openmm_bg.molecules.collective_variables import CV_KINDS, Dihedral, Distance, parse_collective_variable
from openmm_bg.molecules.expressions import CONSTANTS, StateExpression, canonical_form, parse_expression
from openmm_bg.molecules.loading import checkpoint_metadata
from openmm_bg.molecules.named_cvs import standard_collective_variables
from openmm_bg.molecules.states import State, parse_state
from openmm_bg.molecules.systems import get_system
from openmm_bg.recipes.demo import DemoSettings
from openmm_bg.sampling import load_checkpoint
from openmm_bg.training.losses import MCMC_KINDS
from openmm_bg.training.trainer import PRECISIONS, Schedule, TrainingConfig

#: inputs per target in the default run, and under --runslow
FAST_EXAMPLES, SLOW_EXAMPLES = 30, 1000
#: a parser answers in microseconds: a second is a hang, not a slow machine
PARSER_DEADLINE = timedelta(seconds=2)
#: loading a checkpoint builds a generator and an OpenMM context
LOADER_DEADLINE = timedelta(seconds=20)

VARIABLES = ("phi", "psi", "d", "x_1")
CV_TOPOLOGY_SYSTEM = "ala2-vacuum"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("OPENMM_BG_DEBUG", raising=False)


@pytest.fixture
def fuzz(request):
    """``fuzz(strategy, check, deadline)`` runs ``check`` on the budget's number of drawn examples; returns the count."""
    slow = request.config.getoption("--runslow")
    n_examples = SLOW_EXAMPLES if slow else FAST_EXAMPLES

    def run(strategy, check, deadline=PARSER_DEADLINE, n=None) -> int:
        wanted = n_examples if n is None else n
        seen = []

        @settings(
            max_examples=wanted, derandomize=True, database=None, deadline=deadline, print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )
        @given(strategy)
        def property_holds(example):
            seen.append(1)
            check(example)

        property_holds()
        if slow and n is None:
            assert len(seen) >= SLOW_EXAMPLES, f"only {len(seen)} examples ran"
        print(f"{request.node.name}: {len(seen)} examples")
        return len(seen)

    return run


def assert_clear(error: BaseException) -> None:
    """A rejection the CLI turns into one line: a ValueError with a non-empty one-line message."""
    assert isinstance(error, ValueError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message.strip(), f"empty message from {type(error).__name__}"
    assert len(message.splitlines()) == 1, f"message of {len(message.splitlines())} lines: {message!r}"


# --- mutations shared by the text targets ---------------------------------------------------

#: junk that near-valid inputs get: operators outside the whitelist, code, unicode, huge and
#: non-finite numbers, separators, control characters
JUNK_TOKENS = (
    "**", "//", "%", "@", "<<", ">>", "&", "|", "^", "~", "==", "!=", "is", "in", "not in", "=", ":=", ":", ",", ";", ".",
    "(", ")", "[", "]", "{", "}", "'", '"', "#", "\\", "lambda x:", "if", "else", "for", "import", "__import__('os')",
    "os.system('x')", "x[0]", "f'{phi}'", "1e999", "-1e999", "1e-999", "nan", "inf", "NaN", "1j", "0x1F", "0o7", "1_000",
    "9" * 40, "9" * 400, "9" * 5000, "1." + "0" * 300, "True", "None", "...", "pi", "deg", "phi", "psi", "and", "or", "not",
    "<", "<=", ">", ">=", "+", "-", "*", "/", " ", "  ", "\t", "\n", "\r", "\x0b", "\x00", "\x7f", "\u00a0", "\u200b",
    "\u2028", "\ud800", "\ufeff", "🙂", "φ", "ｐｈｉ", "µ", "٤", "١٤", "一", "\u0301",
)


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s+|\w+|[^\w\s]", text)


@st.composite
def mutated(draw, valid: st.SearchStrategy[str], junk: tuple[str, ...] = JUNK_TOKENS) -> str:
    """A valid text with one to four token edits: drop, swap, duplicate, insert junk, replace by junk."""
    tokens = _tokens(draw(valid)) or [""]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        edit = draw(st.sampled_from(["drop", "swap", "duplicate", "insert", "replace"]))
        if edit == "drop" and len(tokens) > 1:
            del tokens[i]
        elif edit == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif edit == "duplicate":
            tokens.insert(i, tokens[i])
        elif edit == "insert":
            tokens.insert(i, draw(st.sampled_from(junk)))
        else:
            tokens[i] = draw(st.sampled_from(junk))
    return "".join(tokens)


def nested(valid: st.SearchStrategy[str], max_depth: int = 3000) -> st.SearchStrategy[str]:
    """A valid text under deep nesting: parentheses, ``not``, unary minus, long sums."""
    wrappers = {
        "parens": lambda text, k: "(" * k + text + ")" * k,
        "not": lambda text, k: "not " * k + f"({text})",
        "minus": lambda text, k: f"({'-' * k}phi < 0) and ({text})",
        "sum": lambda text, k: f"({' + '.join(['phi'] * k)} < 0) or ({text})",
        "chain": lambda text, k: " < ".join(["phi"] * (k + 1)),
        "and": lambda text, k: " and ".join([f"({text})"] * k),
    }
    return st.builds(lambda text, kind, k: wrappers[kind](text, k), valid, st.sampled_from(sorted(wrappers)),
                     st.one_of(st.integers(1, 40), st.integers(40, max_depth)))


random_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.text(alphabet=string.printable, max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),  # lone surrogates
)


# --- target 1: the state-expression parser ---------------------------------------------------

number_text = st.one_of(
    st.integers(0, 1000).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0", "0.0", "1e3", "2.5e-3", "1e308", "1e999", ".5", "5.", "1_000", "0x10", "0b11"]),
)


def numeric_text(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(names + tuple(CONSTANTS)), number_text)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from("+-*/"), inner),
            inner.map(lambda a: f"-{a}"),
        ),
        max_leaves=6,
    )


def condition_text(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Expressions built only from the whitelisted constructs, over ``names``."""
    operands = numeric_text(names)
    comparison = st.builds(
        lambda first, rest: first + "".join(f" {op} {operand}" for op, operand in rest),
        operands, st.lists(st.tuples(st.sampled_from(["<", "<=", ">", ">="]), operands), min_size=1, max_size=3),
    )
    return st.recursive(
        comparison,
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner),
            inner.map(lambda a: f"not ({a})"),
        ),
        max_leaves=5,
    )


def expression_inputs(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    valid = condition_text(names)
    return st.one_of(valid, mutated(valid), mutated(valid), nested(valid), random_text,
                     st.sampled_from(["", " ", "\n", "\t \n", "phi", "pi > 0", "1 < 2", "phi = 0", "phi > 0;", "phi >", "()"]))


def _python_reference(text: str, values: dict[str, float]) -> bool | None:
    """What Python itself makes of a whitelisted expression for one frame (ints as floats); None on ZeroDivisionError."""
    tree = ast.parse(text.strip(), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            node.value = float(node.value)
    try:
        return bool(eval(compile(tree, "<reference>", "eval"), {"__builtins__": {}}, {**CONSTANTS, **values}))  # noqa: S307 - the test's own grammar
    except ZeroDivisionError:
        return None


frame_values = st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=len(VARIABLES), max_size=len(VARIABLES))


def _check_expression(text: str) -> None:
    assert canonical_form(text) is None or isinstance(canonical_form(text), str)
    try:
        expression = parse_expression(text, VARIABLES)
    except ValueError as error:
        assert_clear(error)
        return
    assert isinstance(expression, StateExpression)
    assert expression.definition == text.strip()
    assert expression.variables and set(expression.variables) <= set(VARIABLES)
    values = {name: np.array([0.0, -1.0, 2.5, np.nan, np.inf]) + i for i, name in enumerate(VARIABLES)}
    mask = expression.evaluate(values)
    assert mask.dtype == bool and mask.shape == (5,)


def test_expression_parser_fuzz(fuzz):
    fuzz(expression_inputs(VARIABLES), _check_expression)


def test_expression_parser_agrees_with_python(fuzz):
    """Whitelisted expressions mean what Python says they mean, frame by frame."""

    def check(case):
        text, frames = case
        expression = parse_expression(text, VARIABLES)
        values = {name: np.array([frame[i] for frame in frames]) for i, name in enumerate(VARIABLES)}
        mask = expression.evaluate(values)
        for k, frame in enumerate(frames):
            expected = _python_reference(text, dict(zip(VARIABLES, frame)))
            if expected is not None:
                assert mask[k] == expected, (text, frame)

    fuzz(st.tuples(condition_text(VARIABLES).filter(lambda t: any(re.search(rf"\b{v}\b", t) for v in VARIABLES)),
                   st.lists(frame_values, min_size=1, max_size=4)), check)


# --- target 2: the CV specifications, and named CVs in expressions ---------------------------


@pytest.fixture(scope="module")
def peptide():
    """Alanine dipeptide: its topology and positions, and every CV a state may name (own, named, --cv)."""
    molecule = get_system(CV_TOPOLOGY_SYSTEM)
    variables = {**standard_collective_variables(molecule.topology, molecule.positions), **molecule.collective_variables}
    return molecule, variables


identifier = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.sampled_from(["phi", "psi", "pi", "deg", "lambda", "None", "True", "and", "chi", "d", "match", "_", "φ", "ｐｈｉ"]),
)


@st.composite
def cv_spec(draw) -> str:
    kind = draw(st.sampled_from(sorted(CV_KINDS)))
    atoms = draw(st.lists(st.integers(0, 21), min_size=CV_KINDS[kind][0], max_size=CV_KINDS[kind][0]))
    space = st.sampled_from(["", " ", "  "])
    name = draw(identifier)
    return f"{draw(space)}{name}{draw(space)}={draw(space)}{draw(st.sampled_from([kind, kind.upper()]))}:{draw(space)}" + ",".join(
        f"{draw(space)}{a}{draw(space)}" for a in atoms
    )


CV_JUNK = JUNK_TOKENS + ("dihedral", "distance", "angle", "rmsd", "=", ":", ",", "，", "、", "1_0", "+1", "-1", "-0", "0x1", "1.0", "1e3", "21", "22", "99999999999999999999")
#: what parse_collective_variable may accept: ASCII only, NAME=KIND:INDEX[,INDEX...]
STRICT_CV_SPEC = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*[A-Za-z]+\s*:\s*[0-9]+(\s*,\s*[0-9]+)*\s*", re.ASCII)


def test_cv_specification_fuzz(fuzz, peptide):
    molecule, _ = peptide
    topology, positions = molecule.topology, molecule.positions[None]
    reserved = ("psi", "rg")

    def check(spec):
        try:
            name, cv = parse_collective_variable(spec, topology, reserved=reserved)
        except ValueError as error:
            assert_clear(error)
            return
        assert STRICT_CV_SPEC.fullmatch(spec), f"accepted {spec!r}"
        assert name.isidentifier() and not keyword.iskeyword(name) and name not in CONSTANTS and name not in reserved
        assert isinstance(cv, (Dihedral, Distance))
        kind = "dihedral" if isinstance(cv, Dihedral) else "distance"
        assert len(cv.atoms) == CV_KINDS[kind][0] == len(set(cv.atoms))
        assert all(isinstance(a, int) and 0 <= a < topology.n_atoms for a in cv.atoms)
        # the indices as written, in order
        assert list(cv.atoms) == [int(a) for a in spec.split(":", 1)[1].split(",")]
        value = cv(positions)
        assert value.shape == (1,) and np.isfinite(value).all()

    fuzz(st.one_of(cv_spec(), mutated(cv_spec(), CV_JUNK), mutated(cv_spec(), CV_JUNK), random_text), check)


def test_state_definitions_with_named_cvs_fuzz(fuzz, peptide):
    """What ``free-energy --state-a`` parses: built-in names, own and named CVs (``phi_ALA2``, ``chi1_2``, ``rg`` ...)."""
    molecule, variables = peptide
    names = tuple(sorted(variables))
    near_misses = ("phi_ALA3", "phi_2x", "Phi_ALA2", "phi_ALA", "phi:2", "phi_ALA2_A", "chi1_ALA2", "rmsd", "q", "phi_positivee")
    positions = molecule.positions[None]

    def check(text):
        try:
            state = parse_state(text, variables, molecule.states, label="state definition for --state-a")
        except ValueError as error:
            assert_clear(error)
            return
        assert isinstance(state, State) and state.definition == text.strip()
        if state.expression is not None and state.definition not in molecule.states:
            assert set(state.expression.variables) <= set(names)
        mask = state(positions)
        assert mask.dtype == bool and mask.shape == (1,)

    texts = expression_inputs(names + near_misses)
    fuzz(st.one_of(texts, st.sampled_from(sorted(molecule.states)), mutated(st.sampled_from(sorted(molecule.states)))), check)


# --- target 3: the checkpoint loader ----------------------------------------------------------

TOY_BUILDER = "openmm_bg.generator.recipes.realnvp_generator"
TOY_KWARGS = {"event_shape": [1, 3], "n_blocks": 1, "hidden": [4]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small self-contained generator checkpoint for the one-particle double well, and its bytes."""
    molecule = get_system("double-well")
    generator = realnvp_generator(None, **TOY_KWARGS)
    with torch.no_grad():
        rng = torch.Generator().manual_seed(0)
        for p in generator.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=rng, dtype=p.dtype))
    path = save_generator(generator, tmp_path_factory.mktemp("checkpoint") / "generator.pt", TOY_BUILDER, TOY_KWARGS, checkpoint_metadata(molecule))
    return path, path.read_bytes(), generator.state_dict()


def _same_generator(generator: BoltzmannGenerator, reference: dict) -> bool:
    state = generator.state_dict()
    return set(state) == set(reference) and all(torch.equal(state[k], reference[k]) for k in reference)


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """The checkpoint truncated, with bits flipped, or with a stretch overwritten."""
    how = draw(st.sampled_from(["truncate", "flip", "flip", "overwrite"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    damaged_bytes = bytearray(data)
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            damaged_bytes[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    else:
        start = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=64))
        damaged_bytes[start : start + len(patch)] = patch
    return bytes(damaged_bytes)


plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name or "member", content)
    return buffer.getvalue()


@st.composite
def near_checkpoint(draw) -> dict:
    """A torch file shaped like a checkpoint, with one to three of its entries wrong (small sizes only)."""
    state = {"format": CHECKPOINT_FORMAT, "builder": TOY_BUILDER, "builder_kwargs": dict(TOY_KWARGS),
             "state_dict": realnvp_generator(None, **TOY_KWARGS).state_dict(), "metadata": {}}
    junk = {
        "format": st.one_of(plain_values, st.just("openmm_bg.generator/2")),
        "builder": st.one_of(plain_values, st.sampled_from(["os.system", "openmm_bg.cli.main", "openmm_bg.nothing.here", "openmm_bg", "", TOY_BUILDER + "x"])),
        "builder_kwargs": st.one_of(plain_values, st.fixed_dictionaries({"event_shape": st.lists(st.integers(-2, 4), max_size=3)}, optional={
            "n_blocks": st.integers(-2, 3), "hidden": st.lists(st.integers(-2, 6), max_size=2), "sigma": st.floats(), "scale_bound": st.floats(), "colour": plain_values})),
        "state_dict": st.one_of(plain_values, st.just({"flow.weight": torch.zeros(2)}), st.just({})),
        "metadata": st.one_of(plain_values, st.fixed_dictionaries({}, optional={"system": plain_values, "temperature_K": plain_values, "molecule": plain_values})),
    }
    for key in draw(st.lists(st.sampled_from(sorted(junk)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()) and key != "format":
            del state[key]
        else:
            state[key] = draw(junk[key])
    return state


def foreign_files() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=400),
        st.just(b""),
        random_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        plain_values.map(lambda v: pickle.dumps(v)),
        plain_values.map(lambda v: _zip_bytes({"data.pkl": pickle.dumps(v)})),
        st.dictionaries(st.text(max_size=10), st.binary(max_size=50), max_size=3).map(_zip_bytes),
        plain_values.map(_torch_bytes),
        st.lists(st.floats(allow_nan=False), max_size=5).map(lambda v: _torch_bytes(torch.tensor(v, dtype=torch.float64))),
        near_checkpoint().map(_torch_bytes),
        st.just(pickle.dumps(print)),  # a pickled function: weights_only refuses globals
    )


def _check_loaded(load, path: Path, reference: dict, must_match: bool) -> None:
    try:
        generator = load(path)
    except ValueError as error:
        assert_clear(error)
        return
    if isinstance(generator, tuple):  # load_checkpoint: (generator, molecule, temperature, metadata)
        generator, molecule, temperature, _ = generator
        assert molecule.n_atoms == 1 and math.isfinite(temperature) and temperature > 0
    assert isinstance(generator, BoltzmannGenerator)
    if must_match:  # a damaged copy of the checkpoint loads only when nothing that matters changed
        assert _same_generator(generator, reference), "a damaged checkpoint loaded with other weights"


@pytest.mark.parametrize("load", [load_generator, load_checkpoint], ids=["load_generator", "load_checkpoint"])
def test_damaged_checkpoints_fuzz(fuzz, checkpoint, tmp_path, load):
    _, data, reference = checkpoint
    path = tmp_path / "damaged.pt"

    def check(content):
        path.write_bytes(content)
        _check_loaded(load, path, reference, must_match=True)

    fuzz(damaged(data), check, deadline=LOADER_DEADLINE)


@pytest.mark.parametrize("load", [load_generator, load_checkpoint], ids=["load_generator", "load_checkpoint"])
def test_foreign_files_as_checkpoints_fuzz(fuzz, checkpoint, tmp_path, load):
    _, _, reference = checkpoint
    path = tmp_path / "foreign.pt"

    def check(content):
        path.write_bytes(content)
        _check_loaded(load, path, reference, must_match=False)

    fuzz(foreign_files(), check, deadline=LOADER_DEADLINE)


# --- target 4: the YAML settings ------------------------------------------------------------

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(), st.floats(), st.text(max_size=16),
    st.sampled_from(["1e-3", "1e3", "nan", "inf", "-inf", ".nan", "1_000", "0x10", "yes", "no", "~", "float32", "float64", "cosine",
                     "constant", "best", "last", "skip", "drop", "latent", "independence", "spline", ""]),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans()), inner, max_size=4)),
    max_leaves=10,
)
schedule = st.one_of(st.floats(0, 10), st.just([[0, 0.0], [100, 1.0]]), st.just([[0, 1.0]]))
VALID_TRAINING = {
    "n_iterations": st.integers(1, 10**6), "batch_size": st.integers(1, 4096), "kl_batch_size": st.integers(1, 4096),
    "learning_rate": st.one_of(st.floats(1e-6, 1.0), st.just("1e-3")), "lr_schedule": st.sampled_from(["constant", "cosine"]),
    "min_learning_rate": st.floats(0, 1e-3), "weight_decay": st.floats(0, 1e-2), "w_ml": schedule, "w_kl": schedule, "w_rc": schedule,
    "w_mcmc": schedule, "mcmc_kind": st.sampled_from(sorted(MCMC_KINDS)), "mcmc_step_size": st.floats(0.01, 2.0),
    "mcmc_distance_weight": st.one_of(st.none(), st.floats(0, 1)), "temperatures": st.lists(st.floats(0.5, 4.0), min_size=1, max_size=3),
    "target_temperature": st.floats(0.5, 4.0), "energy_cut": st.one_of(st.none(), st.floats(-1e3, 1e4)), "rc_bandwidth": st.floats(0.01, 1.0),
    "grad_clip": st.one_of(st.none(), st.floats(0.1, 1e3)), "nonfinite": st.sampled_from(["skip", "drop"]), "seed": st.integers(0, 2**31),
    "validate_every": st.integers(1, 1000), "keep": st.sampled_from(["last", "best"]), "patience": st.one_of(st.none(), st.integers(1, 20)),
    "overfit_warning": st.one_of(st.none(), st.floats(0.1, 10.0)), "precision": st.sampled_from(sorted(PRECISIONS)),
}
VALID_DEMO = {
    "system": st.just("ala2-vacuum"), "training_topology": st.one_of(st.none(), st.just("ala2-vacuum-300K-md.pdb")),
    "training_data": st.lists(st.fixed_dictionaries({"file": st.just("ala2-vacuum-300K-md.dcd"), "md_steps": st.integers(0, 10**7)},
                                                    optional={"stride": st.integers(1, 50)}), min_size=1, max_size=2),
    "architecture": st.fixed_dictionaries({}, optional={"n_blocks": st.integers(1, 4), "hidden": st.lists(st.integers(4, 64), min_size=1, max_size=2)}),
    "ml": st.fixed_dictionaries({}, optional={k: VALID_TRAINING[k] for k in ("n_iterations", "learning_rate", "batch_size")}),
    "kl": st.fixed_dictionaries({}, optional={"n_iterations": st.integers(0, 100), "w_kl": schedule}),
    "validation_fraction": st.floats(0, 0.9), "n_samples": st.integers(1, 10**6), "sample_batch_size": st.integers(1, 10**4),
    "n_bootstrap": st.integers(2, 500), "state_a": st.just("phi < 0"), "state_b": st.just("phi_positive"), "seed": st.integers(0, 1000),
    "torch_threads": st.integers(1, 4),
}
YAML_JUNK = ("- ", ": ", ":", "\t", "  ", "\n", "[", "]", "{", "}", ",", "&a ", "*a", "!!python/object/apply:os.system ['true']", "!!binary",
             "%YAML 1.1\n", "---\n", "...\n", "? ", "|", ">", "#", "'", '"', "\x00", "\ud800", "\ufeff", "9" * 5000, ".nan", ".inf",
             "yes", "null", "1e999", "~", "n_iterations", "temperatures", "ml", "kl", "🙂", "[" * 400, "{a: " * 300)


@st.composite
def settings_mapping(draw, valid: dict) -> dict:
    """Some settings valid, some junk, some unknown keys."""
    keys = draw(st.lists(st.sampled_from(sorted(valid)), max_size=6, unique=True))
    values = {key: draw(valid[key]) if draw(st.integers(0, 3)) else draw(yaml_values) for key in keys}
    if draw(st.integers(0, 4)) == 0:
        values.update(draw(st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), yaml_values, min_size=1, max_size=2)))
    return values


def settings_files(valid: dict) -> st.SearchStrategy[bytes]:
    mappings = settings_mapping(valid)
    texts = mappings.map(lambda m: yaml.safe_dump(m, sort_keys=False))
    return st.one_of(
        texts.map(str.encode), texts.map(str.encode),
        mutated(texts, YAML_JUNK).map(lambda t: t.encode("utf-8", "surrogatepass")),
        yaml_values.map(lambda v: yaml.safe_dump(v).encode()),
        st.binary(max_size=200),
        random_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b"\n", b"~", b"- 1\n", b"[1, 2]", b"&a [*a]", b"x: &a [*a]", b"a: &x [1]\nb: *x\n",
                         b"ml: &a {n_iterations: *a}", b"\xff\xfe", b"temperatures: [a]", b"temperatures: &t [*t]"]),
        st.integers(1, 12).map(_alias_bomb),
    )


def _alias_bomb(levels: int) -> bytes:
    """``levels`` of YAML anchors, each a list of ten aliases to the one before: 10**levels values if expanded."""
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return ("\n".join(lines) + f"\nml: {{weight_decay: *a{levels}}}\narchitecture: {{junk: *a{levels}}}\n").encode()


def _finite(value, low=-math.inf, strict=False) -> bool:
    return type(value) is float and math.isfinite(value) and (value > low if strict else value >= low)


def _well_formed_training(config: TrainingConfig) -> None:
    """The ranges TrainingConfig's docstring states."""
    for name in ("n_iterations", "batch_size", "kl_batch_size", "validate_every"):
        assert type(getattr(config, name)) is int and getattr(config, name) >= 1, name
    assert type(config.seed) is int and config.seed >= 0
    assert _finite(config.learning_rate, 0, strict=True) and _finite(config.min_learning_rate, 0) and _finite(config.weight_decay, 0)
    assert config.lr_schedule in ("constant", "cosine") and config.mcmc_kind in MCMC_KINDS and config.keep in ("last", "best")
    assert config.nonfinite in ("skip", "drop") and config.precision in PRECISIONS
    assert _finite(config.mcmc_step_size, 0, strict=True) and (config.mcmc_distance_weight is None or _finite(config.mcmc_distance_weight, 0))
    assert config.temperatures and all(_finite(t, 0, strict=True) for t in config.temperatures)
    assert _finite(config.target_temperature, 0, strict=True) and _finite(config.rc_bandwidth, 0, strict=True)
    assert config.energy_cut is None or _finite(config.energy_cut)
    assert config.grad_clip is None or _finite(config.grad_clip, 0, strict=True)
    assert config.patience is None or (type(config.patience) is int and config.patience >= 1)
    assert config.overfit_warning is None or _finite(float(config.overfit_warning), 0, strict=True) and not isinstance(config.overfit_warning, bool)
    for name in ("w_ml", "w_kl", "w_rc", "w_mcmc"):
        spec = getattr(config, name)
        assert not isinstance(spec, bool) and Schedule(spec)(0) >= 0
    assert TrainingConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def _well_formed_demo(demo: DemoSettings) -> None:
    for name in ("system", "state_a", "state_b"):
        assert isinstance(getattr(demo, name), str) and getattr(demo, name).strip()
    assert demo.training_topology is None or (isinstance(demo.training_topology, str) and demo.training_topology.strip())
    assert demo.training_data and all(
        isinstance(e["file"], str) and e["file"].strip() and type(e["stride"]) is int and e["stride"] >= 1 and type(e["md_steps"]) is int and e["md_steps"] >= 0
        for e in demo.training_data
    )
    for name, minimum in (("n_samples", 1), ("sample_batch_size", 1), ("n_bootstrap", 2), ("torch_threads", 1), ("seed", 0)):
        assert type(getattr(demo, name)) is int and getattr(demo, name) >= minimum, name
    assert type(demo.validation_fraction) is float and 0 <= demo.validation_fraction < 1
    _well_formed_training(demo.stage_config("ml"))
    if demo.stage_config("kl") is not None:
        _well_formed_training(demo.stage_config("kl"))
    # compared as YAML text: an architecture value may be nan, which is not equal to itself
    again = DemoSettings.from_dict(yaml.safe_load(yaml.safe_dump(demo.to_dict())))
    assert yaml.safe_dump(again.to_dict()) == yaml.safe_dump(demo.to_dict())


@pytest.mark.parametrize("kind", ["training", "demo"])
def test_yaml_settings_fuzz(fuzz, tmp_path, kind):
    path = tmp_path / "settings.yaml"
    read, valid, well_formed = {
        "training": (TrainingConfig.from_yaml, VALID_TRAINING, _well_formed_training),
        "demo": (DemoSettings.from_yaml, VALID_DEMO, _well_formed_demo),
    }[kind]

    def check(content):
        path.write_bytes(content)
        try:
            settings_read = read(path)
        except ValueError as error:
            assert_clear(error)
            return
        well_formed(settings_read)

    fuzz(settings_files(valid), check)


# --- the same inputs at the command line: exit status 2 and one line ---------------------------

CLI_EXAMPLES = 5


#: warnings Python does not show by default: they never reach a user's terminal
SILENT_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _assert_cli_rejects(argv, capsys) -> None:
    """Exit status 2 and one line on stderr, with no warning a user would see besides it."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 2, argv
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, SILENT_WARNINGS)]
    assert not shown, shown
    err = capsys.readouterr().err
    assert err.startswith(f"openmm-bg {argv[0]}: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def _rejected(parse, text) -> bool:
    try:
        parse(text)
    except ValueError:
        return True
    return False


def test_cli_rejects_fuzzed_states_and_cvs(fuzz, checkpoint, capsys):
    path, _, _ = checkpoint
    molecule = get_system("double-well")
    variables = dict(molecule.collective_variables)
    base = ["free-energy", str(path), "-n", "20", "--batch-size", "20", "--bootstrap", "2", "--no-progress"]

    def check_state(text):
        if _rejected(lambda t: parse_state(t, variables, molecule.states), text) and "\x00" not in text:
            _assert_cli_rejects([*base, f"--state-a={text}", "--state-b=x > 0"], capsys)

    def check_cv(spec):
        if _rejected(lambda s: parse_collective_variable(s, molecule.topology), spec) and "\x00" not in spec:
            _assert_cli_rejects([*base, f"--cv={spec}", "--state-a=x < 0", "--state-b=x > 0"], capsys)

    fuzz(mutated(condition_text(("x", "y"))), check_state, deadline=LOADER_DEADLINE, n=CLI_EXAMPLES)
    fuzz(mutated(cv_spec(), CV_JUNK), check_cv, deadline=LOADER_DEADLINE, n=CLI_EXAMPLES)


def test_cli_rejects_fuzzed_checkpoints_and_settings(fuzz, checkpoint, tmp_path, capsys):
    _, data, _ = checkpoint
    bad = tmp_path / "bad.pt"
    config = tmp_path / "bad.yaml"

    def check_checkpoint(content):
        bad.write_bytes(content)
        if _rejected(load_checkpoint, bad):
            _assert_cli_rejects(["sample", str(bad), "-n", "10", "-o", str(tmp_path / "out"), "--no-progress"], capsys)

    def check_settings(content):
        config.write_bytes(content)
        if _rejected(TrainingConfig.from_yaml, config):
            _assert_cli_rejects(["train", "double-well", "--trajectory", str(tmp_path / "none.dcd"), "--config", str(config), "-o", str(tmp_path / "run")], capsys)
        if _rejected(DemoSettings.from_yaml, config):
            _assert_cli_rejects(["demo", "--config", str(config), "-o", str(tmp_path / "demo"), "--no-progress"], capsys)

    fuzz(st.one_of(damaged(data), foreign_files()), check_checkpoint, deadline=LOADER_DEADLINE, n=CLI_EXAMPLES)
    fuzz(settings_files(VALID_TRAINING), check_settings, deadline=LOADER_DEADLINE, n=CLI_EXAMPLES)


# --- regressions: each mishandled input the fuzzing found, as a plain test ------------------


def test_regression_expression_syntax_warning_is_not_printed():
    """``0not x`` made Python warn "invalid decimal literal" on stderr: a second line at the CLI."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="is not a valid expression"):
            parse_expression("0not (phi < 0)", ["phi"])
        assert canonical_form("0not (phi < 0)") is None
    assert not [w for w in caught if issubclass(w.category, SyntaxWarning)]


def test_regression_expression_integer_beyond_float_range():
    """A 400-digit integer parsed, then evaluate() raised OverflowError (canonical_form too)."""
    huge = "phi < " + "9" * 400
    with pytest.raises(ValueError, match="too large for a float"):
        parse_expression(huge, ["phi"])
    assert canonical_form(huge) == canonical_form("phi < 1e999")


def test_regression_expression_message_is_one_line():
    """An expression written over two lines came back, in the advice, over two lines."""
    with pytest.raises(ValueError, match="compare it") as info:
        parse_expression("(phi\n+ 1)", ["phi"])
    assert len(str(info.value).splitlines()) == 1 and "'(phi + 1) > 0'" in str(info.value)


def test_regression_expression_nesting_is_bounded():
    """canonical_form raised RecursionError (in ast.dump) on a long sum; trees deeper than MAX_DEPTH are refused."""
    long_sum = "(phi < 0) or (" + " + ".join(["phi"] * 1500) + " < 0)"
    assert canonical_form(long_sum) is None
    with pytest.raises(ValueError, match="nested more than 100 operations deep"):
        parse_expression("(phi < 0) or (" + " + ".join(["phi"] * 150) + " < 0)", ["phi"])
    assert parse_expression("(phi < 0) or (" + " + ".join(["phi"] * 90) + " < 0)", ["phi"]).variables == ("phi",)


@pytest.mark.parametrize("atoms", ["4,6,8,١٤", "4,6,8,1_4", "4,6,8,+14", "4,6,８,14"])
def test_regression_cv_atom_indices_are_ascii_digits(peptide, atoms):
    """int() read "١٤" (Arabic-Indic digits), "1_4" and "+14" as 14."""
    molecule, _ = peptide
    with pytest.raises(ValueError, match=r"digits 0-9"):
        parse_collective_variable(f"chi=dihedral:{atoms}", molecule.topology)
    assert parse_collective_variable("chi=dihedral: 4, 6 ,8,14 ", molecule.topology)[1].atoms == (4, 6, 8, 14)


def _member_offset(data: bytes, name: str) -> int:
    """Where a zip member's content starts (torch pads the local header's extra field)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


def test_regression_flipped_bit_in_the_weights_is_refused(checkpoint, tmp_path):
    """torch.load does not check the zip checksums: one flipped bit loaded as other weights, silently."""
    _, data, _ = checkpoint
    member = next(name for name in zipfile.ZipFile(io.BytesIO(data)).namelist() if name.endswith("/data/0"))
    flipped = bytearray(data)
    flipped[_member_offset(data, member) + 3] ^= 0x10
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"damaged \(BadZipFile: Bad CRC-32"):
        load_generator(tmp_path / "flipped.pt")


def test_regression_foreign_pickle_gives_no_warning(tmp_path):
    """torch warned "Detected pickle protocol 4" on stderr before refusing a plain pickle: a second line at the CLI."""
    (tmp_path / "foreign.pt").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="could not read generator checkpoint"):
            load_generator(tmp_path / "foreign.pt")
    assert not [str(w.message) for w in caught if not issubclass(w.category, SILENT_WARNINGS)]


def test_checkpoint_written_without_checksums_still_loads(checkpoint, tmp_path):
    """torch writes zero checksums after set_crc32_options(False): those are not checked, the file loads."""
    _, _, reference = checkpoint
    before = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        path = save_generator(realnvp_generator(None, **TOY_KWARGS), tmp_path / "no-crc.pt", TOY_BUILDER, TOY_KWARGS)
    finally:
        torch.serialization.set_crc32_options(before)
    assert all(info.CRC == 0 for info in zipfile.ZipFile(path).infolist())
    assert isinstance(load_generator(path), BoltzmannGenerator)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"builder_kwargs": {**TOY_KWARGS, "colour": 1}}, r"cannot build a generator from its builder_kwargs \(TypeError: .*colour"),
        ({"builder_kwargs": {**TOY_KWARGS, "hidden": [-1]}}, "cannot build a generator from its builder_kwargs"),
        ({"builder_kwargs": {**TOY_KWARGS, "hidden": [5]}}, "does not fit the architecture its builder makes: Error"),
        ({"builder_kwargs": [1, 2]}, "builder_kwargs are not a mapping"),
        ({"builder": 7}, "its builder is a int"),
        ({"builder": "openmm_bg.cli.main"}, "cannot build a generator"),
        ({"state_dict": {"flow.weight": 1.0}}, "state_dict is not a mapping of names to tensors"),
    ],
)
def test_regression_checkpoint_entries_of_the_wrong_kind(checkpoint, tmp_path, change, message):
    """A wrong builder keyword escaped as TypeError; a state dict of another shape gave a message over many lines."""
    path, _, _ = checkpoint
    state = torch.load(path, weights_only=True)
    torch.save({**state, **change}, tmp_path / "changed.pt")
    with pytest.raises(ValueError, match=message) as info:
        load_generator(tmp_path / "changed.pt")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("damage", [("dw_c * x", "dw_q * x"), ('<Particle index="0"/>', '<Particle index="8"/>')], ids=["expression", "index"])
def test_checkpoint_with_a_system_that_cannot_run_is_a_value_error(checkpoint, tmp_path, damage):
    """Found by the bit-flip fuzzing before the checksum check: a damaged energy expression or particle index."""
    path, _, _ = checkpoint
    state = torch.load(path, weights_only=True)
    molecule = dict(state["metadata"]["molecule"])
    assert damage[0] in molecule["system_xml"]
    molecule["system_xml"] = molecule["system_xml"].replace(*damage)
    torch.save({**state, "metadata": {**state["metadata"], "molecule": molecule}}, tmp_path / "broken.pt")
    try:
        load_checkpoint(tmp_path / "broken.pt")
    except ValueError as error:
        assert_clear(error)
    else:
        pytest.fail("a checkpoint whose System cannot make a Context loaded")


@pytest.mark.parametrize(
    "text, message",
    [
        ("? ''\n: null\n0: null\n", r"unknown training settings \['', 0\]"),  # was TypeError from sorting str and int
        ("0\n", "must hold a mapping of training settings, got a int"),  # was read as no settings
        ("temperatures: [a]\n", "temperatures must be a non-empty list of finite positive numbers"),  # was TypeError
        ("temperatures: &t [*t]\n", "nests more than 20 levels deep"),  # was TypeError
        ("learning_rate: null\n", "learning_rate must be a number"),  # was TypeError
        ("learning_rate: .inf\n", "learning_rate must be a finite number"),  # was accepted
        ("rc_bandwidth: -1\n", "rc_bandwidth and grad_clip must be positive"),  # was accepted
        ("w_kl: yes\n", "a schedule is a number or a list"),  # was accepted as 1
        ("w_kl: [[.nan, 1]]\n", "schedule iterations must be finite"),  # was accepted
        ("w_kl: " + "9" * 400 + "\n", "a schedule is a number or a list"),  # was OverflowError
        ("precision: [1]\n", "precision must be a string"),  # was TypeError (unhashable)
        ("seed: " + "9" * 30 + "\n", "seed must be at most"),  # was accepted, then failed in torch
        ("overfit_warning: yes\n", "overfit_warning must be a positive number"),  # was accepted as 1
    ],
)
def test_regression_training_settings(tmp_path, text, message):
    (tmp_path / "settings.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_yaml(tmp_path / "settings.yaml")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe", "is not a text file of demo settings \\(not UTF-8"),  # was a bare UnicodeDecodeError
        (_alias_bomb(12), "holds more than 10000 values"),  # was a hang: json.dumps expanded 10**12 values
        (b"ml: &a {n_iterations: *a}", "nests more than 20 levels deep"),
        (b"training_data: [{file: null, md_steps: 1}]", "training_data file must be a file name or path"),  # was the file 'None'
        (b"? [1]\n: 2", "is not valid YAML: .* found unhashable key"),
    ],
)
def test_regression_demo_settings(tmp_path, content, message):
    (tmp_path / "demo.yaml").write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        DemoSettings.from_yaml(tmp_path / "demo.yaml")
    assert len(str(info.value).splitlines()) == 1
