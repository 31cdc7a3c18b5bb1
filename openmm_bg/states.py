"""Metastable states written as text: built-in state names or boolean expressions over CVs.

A state definition is either the name of one of a system's built-in states
(``MolecularSystem.states``, e.g. ``phi_positive``) or a boolean expression over
collective variables, such as ``"phi > 0"``, ``"phi > 0.5 and phi < 2.2"``,
``"-pi < psi < 0"`` or ``"d < 0.35 or not (phi < 0)"``.

Expressions are parsed with :mod:`ast` and only these constructs are evaluated, on
numpy arrays (one value per frame); anything else is refused with a ``ValueError``,
and nothing is ever passed to ``eval``:

* comparisons ``<``, ``<=``, ``>``, ``>=``, also chained (``-pi < psi < 0``);
* ``and``, ``or``, ``not`` and parentheses;
* arithmetic ``+``, ``-``, ``*``, ``/`` and unary ``-``;
* numbers, the names of collective variables, and the constants ``pi`` and
  ``deg = pi / 180`` (so ``phi > 30*deg`` works).

Collective variables are functions ``cv(positions (n_frames, n_atoms, 3) nm) ->
(n_frames,)``: those of a system, plus any made from a short text with
:func:`parse_collective_variable` (``"chi=dihedral:4,6,8,14"`` in radians,
``"d=distance:0,5"`` in nm).

:func:`bundled_reference` returns the bundled reference free-energy difference of a
pair of states when the repository ships one (``data/<system>-reference.json``).

Example
-------
>>> from openmm_bg.systems import get_system
>>> mol = get_system("ala2-vacuum")
>>> state = parse_state("-pi < phi < 0 and psi > 60*deg", mol.collective_variables, mol.states)
>>> in_state = state(positions)          # bool ndarray, shape (n_frames,)
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

__all__ = [
    "CONSTANTS",
    "CV_KINDS",
    "StateExpression",
    "State",
    "parse_expression",
    "parse_state",
    "parse_collective_variable",
    "evaluate_states",
    "bundled_reference",
]

#: constants an expression may use besides the collective variables
CONSTANTS: dict[str, float] = {"pi": math.pi, "deg": math.pi / 180.0}

#: kinds of collective variable :func:`parse_collective_variable` builds -> (number of atoms, unit)
CV_KINDS: dict[str, tuple[int, str]] = {"dihedral": (4, "radians"), "distance": (2, "nm")}

_ALLOWED = (
    "comparisons (<, <=, >, >=, also chained like '-pi < psi < 0'), and/or/not, parentheses, "
    "+ - * /, unary -, real numbers"
)
_COMPARISONS = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal}
_ARITHMETIC = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_REFUSED = {
    ast.Call: "a function call",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.IfExp: "an if-else expression",
    ast.NamedExpr: "an assignment",
    ast.Starred: "unpacking",
    ast.JoinedStr: "an f-string",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_OPERATOR_NAMES = {
    ast.Pow: "'**'",
    ast.FloorDiv: "'//'",
    ast.Mod: "'%'",
    ast.MatMult: "'@'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.BitAnd: "'&' (write 'and')",
    ast.BitOr: "'|' (write 'or')",
    ast.BitXor: "'^'",
    ast.Invert: "'~' (write 'not')",
    ast.UAdd: "unary '+'",
    ast.Eq: "'==' (states are regions: use <, <=, >, >=)",
    ast.NotEq: "'!=' (states are regions: use <, <=, >, >=)",
    ast.Is: "'is'",
    ast.IsNot: "'is not'",
    ast.In: "'in'",
    ast.NotIn: "'not in'",
}

_BOOL, _NUMBER = "condition", "number"


def _segment(definition: str, node: ast.AST) -> str:
    try:
        return ast.get_source_segment(definition, node) or ast.unparse(node)
    except Exception:  # noqa: BLE001 - only for the message
        return type(node).__name__


@dataclass(frozen=True)
class StateExpression:
    """A checked boolean expression over named variables; see :func:`parse_expression`.

    Attributes
    ----------
    definition : str
        The text it was parsed from.
    variables : tuple of str
        Names of the collective variables it uses (constants excluded), in order of appearance.
    """

    definition: str
    variables: tuple[str, ...]
    tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on arrays of variable values.

        Parameters
        ----------
        values : mapping of str to array, each shape (n_frames,)
            At least the names in :attr:`variables`.

        Returns
        -------
        bool ndarray, shape (n_frames,)
        """
        missing = [name for name in self.variables if name not in values]
        if missing:
            raise ValueError(f"no values given for {', '.join(missing)} (needed by {self.definition!r})")
        arrays = {name: np.asarray(values[name], dtype=np.float64) for name in self.variables}
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"variable values must be one-dimensional arrays of one length, got shapes {sorted(shapes)}")
        with np.errstate(all="ignore"):
            result = _evaluate(self.tree.body, arrays)
        return np.broadcast_to(np.asarray(result, dtype=bool), next(iter(shapes))).copy()


def _check(node: ast.AST, definition: str, known: frozenset[str], used: list[str], label: str, hint: str) -> str:
    """Refuse everything outside the whitelist; return the kind of value the node gives."""

    def refuse(what: str) -> ValueError:
        return ValueError(
            f"{label} {definition!r}: {what} is not allowed (in {_segment(definition, node)!r}); "
            f"allowed are {_ALLOWED}, the constants pi and deg, and the collective variables {_names(known)}"
        )

    if isinstance(node, ast.BoolOp):
        for value in node.values:
            if _check(value, definition, known, used, label, hint) != _BOOL:
                word = "and" if isinstance(node.op, ast.And) else "or"
                raise ValueError(
                    f"{label} {definition!r}: '{word}' joins conditions, but {_segment(definition, value)!r} is a number; "
                    f"compare it, e.g. '{_segment(definition, value)} > 0'"
                )
        return _BOOL
    if isinstance(node, ast.UnaryOp):
        kind = _check(node.operand, definition, known, used, label, hint)
        if isinstance(node.op, ast.Not):
            if kind != _BOOL:
                raise ValueError(f"{label} {definition!r}: 'not' needs a condition, got the number {_segment(definition, node.operand)!r}")
            return _BOOL
        if isinstance(node.op, ast.USub):
            if kind != _NUMBER:
                raise ValueError(f"{label} {definition!r}: unary '-' needs a number, got the condition {_segment(definition, node.operand)!r}")
            return _NUMBER
        raise refuse(_OPERATOR_NAMES.get(type(node.op), type(node.op).__name__))
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARISONS:
                raise refuse(_OPERATOR_NAMES.get(type(op), type(op).__name__))
        for operand in [node.left, *node.comparators]:
            if _check(operand, definition, known, used, label, hint) != _NUMBER:
                raise ValueError(
                    f"{label} {definition!r}: comparisons take numbers, but {_segment(definition, operand)!r} is a condition; "
                    "join conditions with and/or"
                )
        return _BOOL
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise refuse(_OPERATOR_NAMES.get(type(node.op), type(node.op).__name__))
        for operand in (node.left, node.right):
            if _check(operand, definition, known, used, label, hint) != _NUMBER:
                raise ValueError(f"{label} {definition!r}: arithmetic takes numbers, but {_segment(definition, operand)!r} is a condition")
        return _NUMBER
    if isinstance(node, ast.Name):
        if node.id in known:
            if node.id not in used:
                used.append(node.id)
            return _NUMBER
        if node.id in CONSTANTS:
            return _NUMBER
        raise ValueError(
            f"unknown name {node.id!r} in {label} {definition!r}; known collective variables: {_names(known)}; "
            f"constants: {', '.join(CONSTANTS)}{hint}"
        )
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise refuse(f"the constant {node.value!r}")
        return _NUMBER
    raise refuse(_REFUSED.get(type(node), type(node).__name__))


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "none"


def _evaluate(node: ast.AST, values: Mapping[str, np.ndarray]):
    # Only reached for trees that _check accepted.
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = _evaluate(node.values[0], values)
        for value in node.values[1:]:
            result = combine(result, _evaluate(value, values))
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return np.logical_not(operand) if isinstance(node.op, ast.Not) else np.negative(operand)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        result = None
        for op, comparator in zip(node.ops, node.comparators):
            right = _evaluate(comparator, values)
            step = _COMPARISONS[type(op)](left, right)
            result = step if result is None else np.logical_and(result, step)
            left = right
        return result
    if isinstance(node, ast.BinOp):
        return _ARITHMETIC[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.Name):
        return values[node.id] if node.id in values else CONSTANTS[node.id]
    if isinstance(node, ast.Constant):
        return float(node.value)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover


def parse_expression(definition: str, variables: Iterable[str], *, label: str = "state definition", hint: str = "") -> StateExpression:
    """Parse and check a boolean expression over the named variables.

    Parameters
    ----------
    definition : str
        e.g. ``"phi > 0 and -pi < psi < 0"``.
    variables : iterable of str
        The names the expression may use (besides ``pi`` and ``deg``).
    label : str
        How error messages call the definition, e.g. ``"state definition for --state-a"``.
    hint : str
        Appended to the message for an unknown name.

    Returns
    -------
    StateExpression

    Raises
    ------
    ValueError
        For an empty definition, a syntax error, any construct outside the whitelist,
        an unknown name, an expression that is a number rather than a condition, or one
        that uses no variable.
    """
    if not isinstance(definition, str):
        raise TypeError(f"{label} must be a string, got {type(definition).__name__}")
    known = frozenset(variables)
    clashes = sorted(known & set(CONSTANTS))
    if clashes:
        raise ValueError(f"variable names {clashes} clash with the constants {', '.join(CONSTANTS)}")
    text = definition.strip()
    if not text:
        raise ValueError(f"{label} is empty; give an expression such as '{_example(known)}'")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{label} {definition!r} is not a valid expression ({error.msg}); write e.g. '{_example(known)}'") from None
    except (RecursionError, MemoryError, ValueError):
        raise ValueError(f"{label} {definition!r} could not be parsed (too deeply nested or not text)") from None
    used: list[str] = []
    try:
        kind = _check(tree.body, text, known, used, label, hint)
    except RecursionError:
        raise ValueError(f"{label} {definition!r} is too deeply nested") from None
    if kind != _BOOL:
        raise ValueError(f"{label} {definition!r} is a number, not a condition; compare it, e.g. '{text} > 0'")
    if not used:
        raise ValueError(f"{label} {definition!r} uses no collective variable; known: {_names(known)}{hint}")
    return StateExpression(definition=text, variables=tuple(used), tree=tree)


def _example(known: Iterable[str]) -> str:
    known = sorted(known)
    return f"{known[0]} > 0" if known else "x > 0"


@dataclass(frozen=True)
class State:
    """A state made from a definition by :func:`parse_state`; call it on positions.

    Attributes
    ----------
    definition : str
        The definition as given (stripped).
    builtin : callable or None
        The system's own indicator when the definition names a built-in state.
    expression : StateExpression or None
        The parsed expression otherwise.
    variables : dict of str to callable
        The collective variables the expression uses.
    """

    definition: str
    builtin: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    expression: StateExpression | None = None
    variables: Mapping[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict, repr=False)

    def evaluate(self, positions: np.ndarray, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Indicator of the state, bool ndarray shape (n_frames,).

        Parameters
        ----------
        positions : ndarray, shape (n_frames, n_atoms, 3), nm
        cache : dict, optional
            Values of collective variables already computed on these positions, by
            name; filled with those computed here (share it between states).
        """
        if self.builtin is not None:
            return np.asarray(self.builtin(positions), dtype=bool)
        assert self.expression is not None
        cache = {} if cache is None else cache
        for name in self.expression.variables:
            if name not in cache:
                cache[name] = np.asarray(self.variables[name](positions), dtype=np.float64)
        return self.expression.evaluate(cache)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return self.evaluate(positions)


def parse_state(
    definition: str,
    variables: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    states: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    *,
    label: str = "state definition",
    hint: str = "",
) -> State:
    """A state from a built-in state name or a boolean expression over collective variables.

    Parameters
    ----------
    definition : str
        The name of one of ``states`` or an expression (see the module notes).
    variables : mapping of str to callable, optional
        Collective variables ``cv(positions) -> (n_frames,)`` the expression may use.
    states : mapping of str to callable, optional
        Built-in states ``state(positions) -> bool (n_frames,)``.
    label : str
        How error messages call the definition, e.g. ``"state definition for --state-a"``.
    hint : str
        Appended to the message for an unknown name.

    Returns
    -------
    State
        ``state(positions (n_frames, n_atoms, 3) nm) -> bool ndarray (n_frames,)``.

    Raises
    ------
    ValueError
        See :func:`parse_expression`; messages name the built-in states too.
    """
    variables = dict(variables or {})
    states = dict(states or {})
    if not isinstance(definition, str):
        raise TypeError(f"{label} must be a string, got {type(definition).__name__}")
    text = definition.strip()
    builtins = f"a built-in state ({_names(states)}) or " if states else ""
    if not text:
        raise ValueError(f"{label} is empty; give {builtins}an expression such as '{_example(variables)}'")
    if text in states:
        return State(definition=text, builtin=states[text])
    extra = f"; built-in states: {_names(states)}" if states else ""
    expression = parse_expression(text, variables, label=label, hint=extra + hint)
    return State(definition=text, expression=expression, variables={name: variables[name] for name in expression.variables})


def evaluate_states(states: Iterable[State], positions: np.ndarray) -> list[np.ndarray]:
    """Evaluate several states on the same positions, computing each collective variable once.

    Returns
    -------
    list of bool ndarray, each shape (n_frames,)
    """
    cache: dict[str, np.ndarray] = {}
    return [state.evaluate(positions, cache) for state in states]


_CV_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")


def parse_collective_variable(
    spec: str,
    topology,
    *,
    box_lengths: np.ndarray | None = None,
    reserved: Iterable[str] = (),
) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A collective variable from a short text ``NAME=KIND:i,j[,k,l]``.

    Kinds (atom indices count from 0, in the topology's order):

    ``dihedral:i,j,k,l``
        The dihedral angle of four atoms, radians in (-pi, pi]
        (:class:`openmm_bg.collective_variables.Dihedral`).
    ``distance:i,j``
        The distance of two atoms, nm, minimum image when ``box_lengths`` is given
        (:class:`openmm_bg.collective_variables.Distance`).

    Parameters
    ----------
    spec : str
        e.g. ``"chi=dihedral:4,6,8,14"`` or ``"d=distance:0,5"``.
    topology : mdtraj.Topology
    box_lengths : array, shape (3,), nm, optional
        Orthorhombic periodic box for distances.
    reserved : iterable of str
        Names already taken (e.g. the system's own collective variables).

    Returns
    -------
    name : str
    cv : callable
        ``cv(positions (n_frames, n_atoms, 3) nm) -> ndarray (n_frames,)``.
    """
    from .collective_variables import Dihedral, Distance

    kinds = ", ".join(f"NAME={kind}:{','.join('ijkl'[:n])}" for kind, (n, _) in CV_KINDS.items())
    match = _CV_SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"collective variable {spec!r} is not of the form {kinds} (e.g. 'chi=dihedral:4,6,8,14')")
    name, kind, atoms_text = match.group(1), match.group(2).lower(), match.group(3)
    if keyword.iskeyword(name) or name in CONSTANTS:
        raise ValueError(f"collective variable {spec!r}: {name!r} is reserved; choose another name")
    if name in set(reserved):
        raise ValueError(f"collective variable {spec!r}: {name!r} is already defined; choose another name")
    if kind not in CV_KINDS:
        raise ValueError(f"collective variable {spec!r}: unknown kind {kind!r}; known kinds: {', '.join(CV_KINDS)}")
    n_atoms_needed = CV_KINDS[kind][0]
    try:
        atoms = tuple(int(a) for a in atoms_text.split(","))
    except ValueError:
        raise ValueError(f"collective variable {spec!r}: atom indices must be integers separated by commas, got {atoms_text!r}") from None
    if len(atoms) != n_atoms_needed:
        raise ValueError(f"collective variable {spec!r}: a {kind} takes {n_atoms_needed} atom indices, got {len(atoms)}")
    n_atoms = topology.n_atoms
    if any(a < 0 or a >= n_atoms for a in atoms):
        raise ValueError(f"collective variable {spec!r}: atom indices must lie in [0, {n_atoms}) for this topology of {n_atoms} atoms")
    if len(set(atoms)) != len(atoms):
        raise ValueError(f"collective variable {spec!r}: atom indices must be distinct")
    if kind == "dihedral":
        return name, Dihedral(topology, atoms)
    box = None if box_lengths is None else tuple(float(x) for x in np.asarray(box_lengths).reshape(3))
    return name, Distance(topology, atoms, box)


# --- bundled references ----------------------------------------------------------------------

#: system -> (state A, state B) of the bundled reference ``delta_f_kT = F_B - F_A``, as expressions
_REFERENCE_STATES: dict[str, tuple[str, str]] = {"ala2-vacuum": ("phi < 0", "phi > 0")}
#: system -> built-in state name -> the same state as an expression
_BUILTIN_EXPRESSIONS: dict[str, dict[str, str]] = {"ala2-vacuum": {"phi_negative": "phi < 0", "phi_positive": "phi > 0"}}
_MIRRORED = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}
_STRICT = {ast.LtE: ast.Lt, ast.GtE: ast.Gt}


def _canonical(system: str, definition: str) -> str | None:
    """A normal form of a one-comparison state definition, for matching against references.

    ``phi > 0``, ``0 < phi``, ``phi >= 0`` and the built-in ``phi_positive`` give the same
    form (a boundary has no weight); anything more complex is returned as parsed.
    """
    text = _BUILTIN_EXPRESSIONS.get(system, {}).get(definition.strip(), definition.strip())
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return None
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _MIRRORED:
        left, op, right = node.left, type(node.ops[0]), node.comparators[0]
        if isinstance(left, (ast.Constant, ast.UnaryOp)) and isinstance(right, ast.Name):
            left, op, right = right, _MIRRORED[op], left
        op = _STRICT.get(op, op)
        if isinstance(right, ast.Constant) and isinstance(right.value, (int, float)):
            right = ast.Constant(float(right.value))
        node = ast.Compare(left=left, ops=[op()], comparators=[right])
    return ast.dump(node)


def bundled_reference(system: str, state_a: str, state_b: str, temperature: float | None = None) -> dict | None:
    """The bundled reference for ``F_B - F_A`` of two states of a system, or ``None``.

    Parameters
    ----------
    system : str
        Name of a ready-made system, e.g. ``"ala2-vacuum"``.
    state_a, state_b : str
        State definitions: built-in names (``phi_negative``) or simple expressions
        (``phi < 0``; ``0 > phi`` and ``phi <= 0`` match too).
    temperature : float, K, optional
        When given, the reference must be for this temperature.

    Returns
    -------
    dict or None
        The record of ``data/<system>-reference.json`` (see
        :func:`openmm_bg.data.load_reference`) with ``delta_f_kT`` and ``error_kT``
        turned to ``F_B - F_A`` for the states as given (the sign flips when A and B are
        swapped), plus ``"file"``; ``None`` when no reference matches.
    """
    if system not in _REFERENCE_STATES:
        return None
    ref_a, ref_b = (_canonical(system, s) for s in _REFERENCE_STATES[system])
    a, b = _canonical(system, state_a), _canonical(system, state_b)
    if (a, b) == (ref_a, ref_b):
        sign = 1.0
    elif (a, b) == (ref_b, ref_a):
        sign = -1.0
    else:
        return None
    from .data import bundled_path, load_reference

    record = load_reference(system)
    if temperature is not None and abs(float(record.get("temperature_K", float("nan"))) - float(temperature)) > 1e-6:
        return None
    record = dict(record)
    record["delta_f_kT"] = sign * float(record["delta_f_kT"])
    record["file"] = str(bundled_path(f"{system}-reference.json"))
    return record
