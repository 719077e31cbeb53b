"""JsonLogic for rule conditions: the maintained `panzi-json-logic` library evaluates, this module
validates.

Library choice (checked against tests/conformance/jsonlogic-tests.json, 277 cases):
`panzi-json-logic` 1.0.1 and `json-logic-qubit` 0.9.1 both pass every case; `json-logic` 0.6.3
is the unmaintained original that qubit forked. We use panzi's: it is the more recent, it takes an
operations table (so we can drop `log`, which prints), and it was the faster of the two on the
seed's rule (bench/automations.py measures the engine). Both install the same
`json_logic` import name, so only one may be in requirements.txt.

Evaluation is permissive by design (JsonLogic returns null for a missing var), but a rule that is
saved must be well formed: `validate()` walks the tree and names the first unknown operator or
wrong arity, so the API answers 400 instead of a rule that can never match.
"""

from __future__ import annotations

from typing import Any

from json_logic.apply import apply as _apply
from json_logic.builtins import BUILTINS as _LIBRARY_OPERATIONS
from json_logic.builtins import not_ as _not
from json_logic.builtins import to_bool as _to_bool

# `log` prints to stdout from inside a worker; not an operator a stored rule may use.
OPERATIONS = {name: fn for name, fn in _LIBRARY_OPERATIONS.items() if name != "log"}

# Operators the library handles inside apply() itself (short-circuit and iteration).
_SPECIAL = {"if", "?:", "and", "or", "filter", "reduce", "map", "all", "some", "none"}

# (minimum, maximum) number of arguments; None = no upper bound.
ARITY: dict[str, tuple[int, int | None]] = {
    "if": (1, None),
    "?:": (3, 3),
    "and": (1, None),
    "or": (1, None),
    "filter": (2, 2),
    "map": (2, 2),
    "reduce": (2, 3),
    "all": (2, 2),
    "some": (2, 2),
    "none": (2, 2),
    "==": (2, 2),
    "!=": (2, 2),
    "===": (2, 2),
    "!==": (2, 2),
    "<": (2, 3),
    "<=": (2, 3),
    ">": (2, 2),
    ">=": (2, 2),
    "!": (1, 1),
    "!!": (1, 1),
    "+": (0, None),
    "*": (1, None),
    "-": (1, 2),
    "/": (2, 2),
    "%": (2, 2),
    "in": (2, 2),
    "min": (1, None),
    "max": (1, None),
    "cat": (0, None),
    "var": (0, 2),
    "substr": (2, 3),
    "merge": (0, None),
    "missing": (0, None),
    "missing_some": (2, 2),
}
KNOWN_OPERATORS = frozenset(ARITY) & (frozenset(OPERATIONS) | _SPECIAL)
MAX_DEPTH = 32


class JsonLogicError(ValueError):
    """A rule that is not well-formed JsonLogic; `path` says where (e.g. `and[1].>`)."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(f"{message} at {path}" if path else message)
        self.path = path


def validate(logic: Any, *, path: str = "", depth: int = 0) -> None:
    """Raise JsonLogicError naming the first unknown operator, wrong arity or bad shape."""
    if depth > MAX_DEPTH:
        raise JsonLogicError(f"nesting deeper than {MAX_DEPTH} levels", path)
    if isinstance(logic, list):
        for index, item in enumerate(logic):
            validate(item, path=f"{path}[{index}]", depth=depth + 1)
        return
    if not isinstance(logic, dict):
        return
    if len(logic) != 1:
        raise JsonLogicError(f"an operation is an object with exactly one key, got {len(logic)} keys", path)
    op, args = next(iter(logic.items()))
    here = f"{path}.{op}" if path else op
    if op not in KNOWN_OPERATORS:
        raise JsonLogicError(f"unknown operator {op!r}", here)
    arguments = args if isinstance(args, list) else [args]
    low, high = ARITY[op]
    if len(arguments) < low or (high is not None and len(arguments) > high):
        expected = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
        raise JsonLogicError(f"operator {op!r} takes {expected} argument(s), got {len(arguments)}", here)
    for index, item in enumerate(arguments):
        validate(item, path=f"{here}[{index}]", depth=depth + 1)


def evaluate(logic: Any, data: Any) -> Any:
    """The JsonLogic value of `logic` for `data` (exceptions from bad data propagate)."""
    return _apply(logic, data, OPERATIONS)


def truthy(value: Any) -> bool:
    """JsonLogic truthiness: empty arrays are false, "0" is true."""
    if isinstance(value, list):
        return len(value) > 0
    return bool(value)


# --- compiled evaluation -------------------------------------------------------------------------
# The engine evaluates every active rule against every reading of a batch, so it compiles each
# rule once into nested closures over the *library's own operator functions* (same semantics,
# checked against the same conformance file) and skips re-walking the JSON tree per evaluation.
# Iterating operators (map, filter, reduce, all, some, none) and anything unknown fall back to
# the library's apply() for that subtree.


_FALLBACK = {"filter", "reduce", "map", "all", "some", "none"}


def compile_logic(logic: Any):
    """A function data → value equal to `evaluate(logic, data)`."""
    if isinstance(logic, list):
        parts = [compile_logic(item) for item in logic]
        return lambda data: [part(data) for part in parts]
    if not isinstance(logic, dict) or len(logic) != 1:
        return lambda data: logic
    op, args = next(iter(logic.items()))
    if not isinstance(args, list):
        args = [args]
    if op in _FALLBACK or (op not in OPERATIONS and op not in ("if", "?:", "and", "or")):
        return lambda data: _apply(logic, data, OPERATIONS)
    compiled = [compile_logic(arg) for arg in args]
    if op in ("if", "?:"):
        return _compile_if(compiled)
    if op == "and":

        def _and(data):
            current = None
            for part in compiled:
                current = part(data)
                if _not(current):
                    return current
            return current

        return _and
    if op == "or":

        def _or(data):
            current = None
            for part in compiled:
                current = part(data)
                if _to_bool(current):
                    return current
            return current

        return _or
    fn = OPERATIONS[op]
    if len(compiled) == 1:
        (a,) = compiled
        return lambda data: fn(data, a(data))
    if len(compiled) == 2:
        a, b = compiled
        return lambda data: fn(data, a(data), b(data))
    if len(compiled) == 3:
        a, b, c = compiled
        return lambda data: fn(data, a(data), b(data), c(data))
    return lambda data: fn(data, *[part(data) for part in compiled])


def _compile_if(compiled: list):
    count = len(compiled)

    def _if(data):
        last = count - 1
        index = 0
        while index < last:
            if _to_bool(compiled[index](data)):
                index += 1
                if index >= count:
                    return None
                return compiled[index](data)
            index += 2
        if index >= count:
            return None
        return compiled[index](data)

    return _if
