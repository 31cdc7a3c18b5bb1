"""Boolean expressions over named variables, parsed with :mod:`ast` and checked against a whitelist.

Only these constructs are evaluated, on numpy arrays (one value per frame); anything
else is refused with a ``ValueError``, and nothing is ever passed to ``eval``:

* comparisons ``<``, ``<=``, ``>``, ``>=``, also chained (``-pi < psi < 0``);
* ``and``, ``or``, ``not`` and parentheses;
* arithmetic ``+``, ``-``, ``*``, ``/`` and unary ``-``;
* numbers, the names of the variables, and the constants ``pi`` and
  ``deg = pi / 180`` (so ``phi > 30*deg`` works).

:func:`canonical_form` gives simple comparisons a normal form, so that ``phi > 0``,
``0 < phi`` and ``phi >= 0`` can be recognised as the same region.

Example
-------
>>> expression = parse_expression("-pi < phi < 0 and psi > 60*deg", ["phi", "psi"])
>>> expression.evaluate({"phi": phi, "psi": psi})   # bool ndarray, shape (n_frames,)
"""

from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

__all__ = ["CONSTANTS", "MAX_DEPTH", "StateExpression", "parse_expression", "canonical_form"]

#: constants an expression may use besides the collective variables
CONSTANTS: dict[str, float] = {"pi": math.pi, "deg": math.pi / 180.0}

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

#: deepest nesting of operations an expression may have (a real state definition has a handful);
#: deeper trees would exhaust Python's recursion when checked or evaluated
MAX_DEPTH = 100


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) made one space, for a one-line message."""
    return " ".join(text.split())


def _segment(definition: str, node: ast.AST) -> str:
    try:
        return _one_line(ast.get_source_segment(definition, node) or ast.unparse(node))
    except Exception:  # noqa: BLE001 - only for the message
        return type(node).__name__


def _parse(text: str) -> ast.Expression:
    """``ast.parse`` in eval mode, without the SyntaxWarnings (``0not x``) Python would print on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(text, mode="eval")


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


def _check(node: ast.AST, definition: str, known: frozenset[str], used: list[str], label: str, hint: str, depth: int = 0) -> str:
    """Refuse everything outside the whitelist; return the kind of value the node gives."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{label} {definition!r} is nested more than {MAX_DEPTH} operations deep")

    def check(child: ast.AST) -> str:
        return _check(child, definition, known, used, label, hint, depth + 1)

    def refuse(what: str) -> ValueError:
        return ValueError(
            f"{label} {definition!r}: {what} is not allowed (in {_segment(definition, node)!r}); "
            f"allowed are {_ALLOWED}, the constants pi and deg, and the collective variables {_names(known)}"
        )

    if isinstance(node, ast.BoolOp):
        for value in node.values:
            if check(value) != _BOOL:
                word = "and" if isinstance(node.op, ast.And) else "or"
                raise ValueError(
                    f"{label} {definition!r}: '{word}' joins conditions, but {_segment(definition, value)!r} is a number; "
                    f"compare it, e.g. '{_segment(definition, value)} > 0'"
                )
        return _BOOL
    if isinstance(node, ast.UnaryOp):
        kind = check(node.operand)
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
            if check(operand) != _NUMBER:
                raise ValueError(
                    f"{label} {definition!r}: comparisons take numbers, but {_segment(definition, operand)!r} is a condition; "
                    "join conditions with and/or"
                )
        return _BOOL
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise refuse(_OPERATOR_NAMES.get(type(node.op), type(node.op).__name__))
        for operand in (node.left, node.right):
            if check(operand) != _NUMBER:
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
        if isinstance(node.value, int) and not math.isfinite(_as_float(node.value)):
            raise ValueError(f"{label} {definition!r}: the number {_segment(definition, node)} is too large for a float")
        return _NUMBER
    raise refuse(_REFUSED.get(type(node), type(node).__name__))


def _as_float(value: int | float) -> float:
    """``float(value)``, or inf for an integer beyond the float range (where ``float`` raises)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


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
        return _as_float(node.value)
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
        an unknown name, an integer beyond the float range, an expression that is a
        number rather than a condition, one nested more than :data:`MAX_DEPTH`
        operations deep, or one that uses no variable.  The message is one line.
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
        tree = _parse(text)
    except SyntaxError as error:
        raise ValueError(f"{label} {definition!r} is not a valid expression ({_one_line(str(error.msg))}); write e.g. '{_example(known)}'") from None
    except ValueError as error:  # null bytes, lone surrogates, integers of too many digits
        raise ValueError(f"{label} {definition!r} could not be parsed ({_one_line(str(error))})") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"{label} {definition!r} could not be parsed (too deeply nested)") from None
    used: list[str] = []
    try:
        kind = _check(tree.body, text, known, used, label, hint)
    except RecursionError:
        raise ValueError(f"{label} {definition!r} is too deeply nested") from None
    if kind != _BOOL:
        raise ValueError(f"{label} {definition!r} is a number, not a condition; compare it, e.g. '{_one_line(text)} > 0'")
    if not used:
        raise ValueError(f"{label} {definition!r} uses no collective variable; known: {_names(known)}{hint}")
    return StateExpression(definition=text, variables=tuple(used), tree=tree)


def _example(known: Iterable[str]) -> str:
    known = sorted(known)
    return f"{known[0]} > 0" if known else "x > 0"


_MIRRORED = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}
_STRICT = {ast.LtE: ast.Lt, ast.GtE: ast.Gt}


def canonical_form(definition: str) -> str | None:
    """A normal form of an expression, for telling whether two definitions mean the same region.

    A single comparison of a variable with a number is written variable first with a
    strict operator, so ``phi > 0``, ``0 < phi`` and ``phi >= 0`` give the same form (a
    boundary has no weight); anything more complex is returned as parsed.

    Parameters
    ----------
    definition : str

    Returns
    -------
    str or None
        ``ast.dump`` of the normal form; ``None`` if ``definition`` does not parse (or
        nests too deep for ``ast.dump``).
    """
    try:
        node = _parse(definition.strip()).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _MIRRORED:
        left, op, right = node.left, type(node.ops[0]), node.comparators[0]
        if isinstance(left, (ast.Constant, ast.UnaryOp)) and isinstance(right, ast.Name):
            left, op, right = right, _MIRRORED[op], left
        op = _STRICT.get(op, op)
        if isinstance(right, ast.Constant) and isinstance(right.value, (int, float)):
            right = ast.Constant(_as_float(right.value))
        node = ast.Compare(left=left, ops=[op()], comparators=[right])
    try:
        return ast.dump(node)
    except RecursionError:  # nested deeper than ast.dump recurses; no state definition is
        return None
