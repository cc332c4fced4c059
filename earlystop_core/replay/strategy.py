"""Strategies as text: ``patience=10,min_delta=0.001`` or ``rule=Patience(20) | GL(5)``.

The command line names stopping strategies this way. A spec is Monitor keyword
arguments separated by commas; values are Python literals (``10``, ``0.001``,
``True``, ``'val_loss'``) or bare words (``mode=max``), and ``rule=`` takes a
rule expression built from the rule classes with ``|`` and ``&``. Nothing is
evaluated: the expression is parsed and only known rules and literal arguments
are accepted.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from collections.abc import Callable
from typing import Any

from earlystop_core.monitor import Monitor
from earlystop_core.policy.learned import recommended_policy
from earlystop_core.rules.adaptive import DynamicPatience, RelativePatience
from earlystop_core.rules.auto_patience import AutoPatience
from earlystop_core.rules.base import Patience, Rule, never
from earlystop_core.rules.prechelt import GL, PQ, UP
from earlystop_core.rules.trend import Stalled

RULES: dict[str, Callable[..., Rule]] = {
    "Patience": Patience,
    "DynamicPatience": DynamicPatience,
    "RelativePatience": RelativePatience,
    "GL": GL,
    "PQ": PQ,
    "UP": UP,
    "Stalled": Stalled,
    "AutoPatience": AutoPatience,
    "recommended_policy": recommended_policy,
}


#: The settings a strategy may give: `Monitor`'s keyword arguments.
_SETTINGS = tuple(inspect.signature(Monitor).parameters)


def parse_strategy(spec: str) -> dict[str, Any]:
    """Monitor keyword arguments from a spec string.

    Examples:
        >>> parse_strategy("patience=10,min_delta=0.001")
        {'patience': 10, 'min_delta': 0.001}
        >>> parse_strategy("rule=Patience(20) | Stalled(10, log=True),best_from_epoch=3")
        {'rule': AnyOf(Patience(20), Stalled(window=10, log=True)), 'best_from_epoch': 3}
        >>> parse_strategy("patience")
        Traceback (most recent call last):
        ...
        ValueError: strategy 'patience': 'patience' is not key=value (e.g. patience=10)
        >>> parse_strategy("pateince=10")
        Traceback (most recent call last):
        ...
        ValueError: strategy 'pateince=10': 'pateince' is not a Monitor setting. Did you mean 'patience'?
    """
    arguments: dict[str, Any] = {}
    for item in _split_top_level(spec):
        key, equals, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not equals or not key.isidentifier() or not text:
            raise ValueError(f"strategy {spec!r}: {item.strip()!r} is not key=value (e.g. patience=10)")
        if key in arguments:
            raise ValueError(f"strategy {spec!r}: {key!r} is given twice")
        if key not in _SETTINGS:
            close = difflib.get_close_matches(key, _SETTINGS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" The settings: {', '.join(_SETTINGS)}."
            raise ValueError(f"strategy {spec!r}: {key!r} is not a Monitor setting.{hint}")
        arguments[key] = parse_rule(text) if key == "rule" else _literal(text)
    if not arguments:
        raise ValueError("an empty strategy: give Monitor arguments, e.g. patience=10")
    return arguments


def parse_rule(text: str) -> Rule:
    """A rule from an expression such as ``Patience(20) | (Patience(14) & Stalled(10, log=True))``.

    Examples:
        >>> parse_rule("GL(5) & UP(strips=2)")
        AllOf(GL(alpha=5.0), UP(strips=2, strip=5))
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"rule {text!r} is not an expression: {error.msg}") from None
    return _rule(tree.body, text)


def _rule(node: ast.expr, text: str) -> Rule:
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.BitAnd)):
        left, right = _rule(node.left, text), _rule(node.right, text)
        return left | right if isinstance(node.op, ast.BitOr) else left & right
    if isinstance(node, ast.Name) and node.id == "never":
        return never
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RULES:
        args = [_value(arg, text) for arg in node.args]
        kwargs = {kw.arg: _value(kw.value, text) for kw in node.keywords if kw.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise ValueError(f"rule {text!r}: ** arguments are not accepted")
        return RULES[node.func.id](*args, **kwargs)
    known = ", ".join(sorted(RULES)) + ", never"
    raise ValueError(f"rule {text!r}: {ast.unparse(node)!r} is not a rule; rules are {known}, combined with | and &")


def _value(node: ast.expr, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"rule {text!r}: argument {ast.unparse(node)!r} must be a literal") from None


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: mode=max, monitor=val_loss


def _split_top_level(spec: str) -> list[str]:
    """Split on commas outside parentheses and brackets."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(spec):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(spec[start:index])
            start = index + 1
    items.append(spec[start:])
    return [item for item in items if item.strip()]
