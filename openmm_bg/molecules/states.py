"""Metastable states written as text: built-in state names or boolean expressions over CVs.

A state definition is either the name of one of a system's built-in states
(``MolecularSystem.states``, e.g. ``phi_positive``) or a boolean expression over
collective variables, such as ``"phi > 0"``, ``"phi > 0.5 and phi < 2.2"``,
``"-pi < psi < 0"`` or ``"d < 0.35 or not (phi < 0)"``, checked and evaluated by
:mod:`openmm_bg.molecules.expressions` (never by ``eval``).

Collective variables are functions ``cv(positions (n_frames, n_atoms, 3) nm) ->
(n_frames,)``: those of a system, plus any made from a short text with
:func:`openmm_bg.molecules.collective_variables.parse_collective_variable`, or the named
ones any peptide or protein has (``phi_ALA2``, ``chi1_TRP2``, ``rg``, ``rmsd_ca`` ...) from
:func:`openmm_bg.molecules.named_cvs.standard_collective_variables`.  When there are many,
the message for an unknown name lists the nearest ones.

The built-in states of the ready-made systems are defined once, as text, in
:data:`BUILTIN_STATES`: :mod:`openmm_bg.molecules.systems` parses them into
``MolecularSystem.states``, and :func:`bundled_reference` recognises a built-in name
by the same text when it matches state definitions against the states of a bundled
reference (:data:`openmm_bg.reference.bundled.REFERENCE_STATES`).  The lookup lives
here, not in :mod:`openmm_bg.reference`, because matching definitions needs the
expression parser, which belongs to this layer; the reference layer only reads files.

Example
-------
>>> from openmm_bg.molecules.systems import get_system
>>> mol = get_system("ala2-vacuum")
>>> state = parse_state("-pi < phi < 0 and psi > 60*deg", mol.collective_variables, mol.states)
>>> in_state = state(positions)          # bool ndarray, shape (n_frames,)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from ..reference.bundled import REFERENCE_STATES, bundled_path, load_reference
from .expressions import CONSTANTS, StateExpression, _example, _names, canonical_form, parse_expression

__all__ = [
    "BUILTIN_STATES",
    "MUELLER_BROWN_MINIMA",
    "State",
    "parse_state",
    "builtin_states",
    "evaluate_states",
    "bundled_reference",
]

#: Minima A, C, B of the Mueller-Brown potential (Mueller & Brown, Theor. Chim. Acta 53, 75 (1979)), nm.
MUELLER_BROWN_MINIMA: dict[str, tuple[float, float]] = {"A": (-0.558, 1.442), "C": (-0.050, 0.467), "B": (0.623, 0.028)}


def _squared_distance(center: tuple[float, float]) -> str:
    terms = (f"({name} {'-' if c >= 0 else '+'} {abs(c)})" for name, c in zip("xy", center))
    return " + ".join(f"{term} * {term}" for term in terms)


def _nearest(centers: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    """State name -> "the point (x, y) is nearer to this center than to every other"."""
    return {
        name: " and ".join(f"{_squared_distance(center)} < {_squared_distance(other)}" for key, other in centers.items() if key != name)
        for name, center in centers.items()
    }


_PHI_SIGN = {"phi_negative": "phi < 0", "phi_positive": "phi > 0"}
# the barrier top r0 + w of openmmtools' DoubleWellDimer_WCAFluid: r0 = 2^(1/6) sigma, w = 0.3 sigma, sigma = 0.34 nm
_DIMER_BARRIER = "(1.122462048309373 + 0.3) * 0.34"

# the barrier top of the particle dimer's bond c s - a s^2 + b s^4, s = 2 (d - 1.5), a = 25, b = 10, c = -0.5:
# the middle real root of c - 2 a s + 4 b s^3, as ParticleDimer().barrier_distance() computes it (nm)
_PARTICLE_DIMER_BARRIER = "1.4949995999039694"

#: The built-in states of the ready-made systems: system -> state name -> definition over the
#: system's collective variables.  The only definition of each: the systems' state callables and
#: the bundled-reference lookup are both made from it.
BUILTIN_STATES: dict[str, dict[str, str]] = {
    # C7eq, beta and alpha_R have phi < 0; C7ax and alpha_L phi > 0
    "ala2-vacuum": dict(_PHI_SIGN),
    "ala2-implicit": dict(_PHI_SIGN),
    "dimer-wca": {"closed": f"dimer_distance < {_DIMER_BARRIER}", "open": f"dimer_distance > {_DIMER_BARRIER}"},
    "trpzip2-implicit": {"folded": "rmsd_ca < 0.2", "unfolded": "rmsd_ca > 0.4"},
    # the C-alpha Go model of trpzip2 (openmm_bg.molecules.go_model.GO_STATES): one split of Q, no barrier to leave a gap at
    "trpzip2-go": {"folded": "q_native > 0.5", "unfolded": "q_native < 0.5"},
    "particle-dimer": {"closed": f"dimer_distance < {_PARTICLE_DIMER_BARRIER}", "open": f"dimer_distance > {_PARTICLE_DIMER_BARRIER}"},
    "double-well": {"left": "x < 0", "right": "x > 0"},
    "mueller-brown": _nearest(MUELLER_BROWN_MINIMA),
}


@dataclass(frozen=True)
class State:
    """A state made from a definition by :func:`parse_state`; call it on positions.

    Attributes
    ----------
    definition : str
        The definition as given (stripped).
    builtin : callable or None
        The system's own indicator when the definition names a built-in state that is
        not a :class:`State` (e.g. a plain function given to ``load_system``).
    expression : StateExpression or None
        The parsed expression otherwise; a built-in :class:`State`'s own expression
        when the definition names one.
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
    label, hint : str
        As in :func:`openmm_bg.molecules.expressions.parse_expression`.

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
        builtin = states[text]
        if isinstance(builtin, State) and builtin.expression is not None:
            # keep the expression, so evaluate_states computes its variables once for all states
            return State(definition=text, expression=builtin.expression, variables=builtin.variables)
        return State(definition=text, builtin=builtin)
    extra = f"; built-in states: {_names(states)}" if states else ""
    try:
        expression = parse_expression(text, variables, label=label, hint=extra + hint)
    except ValueError as error:
        unknown = _UNKNOWN_NAME.match(str(error))
        if unknown is None or len(variables) <= _LISTED:
            raise
        raise ValueError(_unknown_name(unknown.group(1), text, variables, label, extra + hint)) from None
    return State(definition=text, expression=expression, variables={name: variables[name] for name in expression.variables})


#: above this many collective variables, the message for an unknown name lists only the nearest ones
_LISTED = 12
_UNKNOWN_NAME = re.compile(r"^unknown name '([^']*)'")


def _unknown_name(name: str, text: str, variables: Mapping[str, object], label: str, hint: str) -> str:
    nearest = difflib.get_close_matches(name, list(variables), n=8, cutoff=0.6) or sorted(variables)[:8]
    return (
        f"unknown name {name!r} in {label} {text!r}; nearest of the {len(variables)} known collective variables: "
        f"{', '.join(nearest)}; constants: {', '.join(CONSTANTS)}{hint}"
    )


def evaluate_states(states: Iterable[State], positions: np.ndarray) -> list[np.ndarray]:
    """Evaluate several states on the same positions, computing each collective variable once.

    Returns
    -------
    list of bool ndarray, each shape (n_frames,)
    """
    cache: dict[str, np.ndarray] = {}
    return [state.evaluate(positions, cache) for state in states]


def builtin_states(system: str, variables: Mapping[str, Callable[[np.ndarray], np.ndarray]]) -> dict[str, State]:
    """The built-in states of a ready-made system, parsed from :data:`BUILTIN_STATES`.

    Parameters
    ----------
    system : str
        A key of :data:`BUILTIN_STATES`.
    variables : mapping of str to callable
        The system's collective variables.

    Returns
    -------
    dict of str to State
        ``state(positions (n_frames, n_atoms, 3) nm) -> bool ndarray (n_frames,)``; they pickle.
    """
    return {name: parse_state(text, variables, label=f"built-in state {name!r} of {system}") for name, text in BUILTIN_STATES[system].items()}


def _resolved_form(system: str, definition: str) -> str | None:
    text = definition.strip()
    return canonical_form(BUILTIN_STATES.get(system, {}).get(text, text))


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
        The record of ``<system>-reference.json`` (see
        :func:`openmm_bg.reference.load_reference`) with ``delta_f_kT`` and ``error_kT``
        turned to ``F_B - F_A`` for the states as given (the sign flips when A and B are
        swapped), plus ``"file"``; ``None`` when no reference matches.
    """
    if system not in REFERENCE_STATES:
        return None
    ref_a, ref_b = (canonical_form(s) for s in REFERENCE_STATES[system])
    a, b = _resolved_form(system, state_a), _resolved_form(system, state_b)
    if (a, b) == (ref_a, ref_b):
        sign = 1.0
    elif (a, b) == (ref_b, ref_a):
        sign = -1.0
    else:
        return None
    record = load_reference(system)
    if temperature is not None and abs(float(record.get("temperature_K", float("nan"))) - float(temperature)) > 1e-6:
        return None
    record = dict(record)
    record["delta_f_kT"] = sign * float(record["delta_f_kT"])
    record["file"] = str(bundled_path(f"{system}-reference.json"))
    return record
