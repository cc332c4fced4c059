"""Stopping rules: small predicates over the monitor's state, composed with ``|`` and ``&``.

A rule is asked once per monitored epoch, after the monitor has updated its
best value and patience count, whether training should stop. Rules that need
memory (Prechelt's strips, dynamic patience) keep it in ``state_dict()`` and
take it back with ``load_state_dict(state)``, so a monitor's ``state_dict``
resumes them exactly. A Monitor works on its own copy of the rule it is
given, so one rule object can configure many monitors.

Values reach rules *signed*: multiplied by -1 in ``mode="max"``, so that lower
is always better, and ``best`` is the monitor's best in the same form.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterable, Mapping
from typing import Any

from earlystop_core._validate import check_int
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError


class Rule(abc.ABC):
    """A stopping rule. Combine rules with ``|`` (any) and ``&`` (all).

    A rule of your own subclasses ``Rule``: ``check`` says whether to stop,
    ``spec`` gives its parameters (the constructor's arguments by name, so
    that ``MyRule(**params)`` rebuilds it), and a rule with memory keeps it in
    ``state_dict``/``load_state_dict`` (strict JSON) and forgets it in
    ``reset``. [`earlystop_core.testing.check_rule`][earlystop_core.testing.check_rule] checks all of this
    (see the "Testing your rules" page).

    A rule should not stop on an epoch it is told improved (``improved=True``):
    one that may, on purpose, says so with ``stops_on_improvement = True`` (a
    time budget, a trend test), and ``check_rule`` then does not hold it to that.

    Examples:
        >>> from earlystop_core.rules.prechelt import UP
        >>> rule = Patience(20) | (Patience(5) & UP(strips=2))
        >>> rule
        AnyOf(Patience(20), AllOf(Patience(5), UP(strips=2, strip=5)))
    """

    #: The reason reported when this rule stops training.
    reason: StopReason = StopReason.CRITERION_MET
    #: Metrics the rule reads from the logs besides the monitored one; the
    #: Monitor checks them before it changes anything, so a bad epoch raises
    #: without leaving the monitor half-updated.
    requires: frozenset[str] = frozenset()
    #: Metrics the rule reads when the logs carry them (a learning rate): absent at any epoch, or NaN, they
    #: are passed over; present, the Monitor checks first that each is a number >= 0.
    optional: frozenset[str] = frozenset()
    #: Whether the rule takes logarithms of the value it sees (which must then be >= 0).
    takes_log: bool = False
    #: Whether its decisions follow from the logged metrics alone, so that replaying recorded logs
    #: reproduces them (a wall-clock budget's do not).
    replayable: bool = True
    #: Whether it may stop on an epoch it is told improved, on purpose (a time budget, a trend test);
    #: otherwise it never does (``check_rule``'s property ``improved``).
    stops_on_improvement: bool = False

    @abc.abstractmethod
    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        """Whether to stop after this epoch (values signed: lower is better)."""
        # Six arguments rather than one record object: building a record costs about 180 ns a call,
        # a fifth of an update with a rule (measured for issue 12).

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """The rule's parameters as JSON: what makes two rules the same rule."""

    def explain(self) -> str:
        """Why the rule stopped, in a few words (called only after a stop)."""
        return repr(self)

    def reset(self) -> None:  # noqa: B027 - stateless rules have nothing to reset
        """Forget the epochs seen so far."""

    def state_dict(self) -> Any:
        """The rule's memory as JSON (None for stateless rules)."""
        return None

    def load_state_dict(self, state: Any) -> None:
        """Restore memory saved by `state_dict`."""
        if state is not None:
            raise StateError(f"corrupt Monitor state: {self!r} keeps no state, got {state!r}")

    def renamed(self, names: Mapping[str, str]) -> Rule:
        """This rule reading its metrics under other names (``{name it reads: name in the logs}``).

        A rule reading only the monitored value (every built-in one but the learned
        policy) is itself. A rule of your own that reads other metrics
        (``requires``) and is asked to read one under another name refuses:
        give it the logged name itself.

        Raises:
            ValueError: The rule reads a metric ``names`` renames, and cannot follow it.
        """
        clash = sorted((self.requires | self.optional) & set(names))
        if clash:
            raise ValueError(
                f"{self!r} reads {clash[0]!r} itself and cannot read it as {names[clash[0]]!r}: "
                f"build the rule with the logged name"
            )
        return self

    def remembered(self) -> list[float]:
        """The monitored values (signed) the rule keeps in its memory.

        With ``check_finite=True`` no non-finite value reaches a rule, so a
        Monitor refuses a saved state whose rule remembers one.
        """
        return []

    def firing(self) -> Rule:
        """The rule that decided the last stop (itself, or a part of a composition)."""
        return self

    def limit(self) -> float | None:
        """The patience in force, for patience-like rules (reported as ``Decision.limit``)."""
        return None

    def __or__(self, other: Rule) -> Rule:
        _check_rule(other, "|")
        if other is never:
            return self
        return other if self is never else AnyOf(self, other)

    def __and__(self, other: Rule) -> Rule:
        _check_rule(other, "&")
        if self is never or other is never:
            return never
        return AllOf(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        spec = self.spec()
        name = spec.pop("rule")
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in spec.items())})"


class _Never(Rule):
    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        return False

    def spec(self) -> dict[str, Any]:
        return {"rule": "never"}

    def __repr__(self) -> str:
        return "never"


#: The rule that never stops: the identity of ``|`` (``never | r`` is ``r``).
never: Rule = _Never()


class Patience(Rule):
    """Keras's fixed patience: stop when ``wait >= patience`` on a non-improving epoch.

    As in Keras, ``wait`` counts from the last improvement (or, with a
    ``baseline``, from the first monitored epoch until it is beaten), and
    epoch 0 never stops, so ``Patience(0)`` acts as ``Patience(1)``.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=Patience(3))  # the same as Monitor("val_loss", patience=3)
        >>> [monitor.update({"val_loss": loss}).should_stop for loss in [0.5, 0.6, 0.7, 0.8]]
        [False, False, False, True]
    """

    reason = StopReason.PATIENCE_EXHAUSTED

    def __init__(self, patience: int) -> None:
        self.patience = check_int("patience", patience)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        return not improved and wait >= self.patience and epoch > 0

    def spec(self) -> dict[str, Any]:
        return {"rule": "Patience", "patience": self.patience}

    def explain(self) -> str:
        return f"no improvement for {self.patience} epoch(s) (Patience({self.patience}))"

    def limit(self) -> float | None:
        return self.patience

    def __repr__(self) -> str:
        return f"Patience({self.patience})"


class _Composite(Rule):
    """Shared by ``AnyOf`` and ``AllOf``: every part sees every epoch."""

    rules: tuple[Rule, ...]

    def __init__(self, *rules: Rule) -> None:
        parts: list[Rule] = []
        for rule in rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"{type(self).__name__} combines Rule objects, got {type(rule).__name__} ({rule!r})")
            parts.extend(rule.rules if isinstance(rule, _Composite) and type(rule) is type(self) else [rule])
        self.rules = tuple(parts)
        self.requires = frozenset().union(*(rule.requires for rule in parts))
        self.optional = frozenset().union(*(rule.optional for rule in parts))
        self.takes_log = any(rule.takes_log for rule in parts)
        self.replayable = all(rule.replayable for rule in parts)
        self.stops_on_improvement = self._combine(rule.stops_on_improvement for rule in parts)
        self._fired: Rule = self

    @staticmethod
    @abc.abstractmethod
    def _combine(verdicts: Iterable[bool]) -> bool:
        """How the parts' verdicts combine: ``any`` or ``all``."""

    def spec(self) -> dict[str, Any]:
        return {"rule": type(self).__name__, "rules": [rule.spec() for rule in self.rules]}

    def reset(self) -> None:
        for rule in self.rules:
            rule.reset()

    def state_dict(self) -> Any:
        return [rule.state_dict() for rule in self.rules]

    def load_state_dict(self, state: Any) -> None:
        if not isinstance(state, list) or len(state) != len(self.rules):
            raise StateError(f"corrupt Monitor state: {self!r} needs a list of {len(self.rules)} states, got {state!r}")
        for rule, part in zip(self.rules, state, strict=True):
            copy.deepcopy(rule).load_state_dict(part)  # all checked before any loads: a refused load changes nothing
        for rule, part in zip(self.rules, state, strict=True):
            rule.load_state_dict(part)

    def remembered(self) -> list[float]:
        return [value for rule in self.rules for value in rule.remembered()]

    def renamed(self, names: Mapping[str, str]) -> Rule:
        parts = [rule.renamed(names) for rule in self.rules]
        return self if all(a is b for a, b in zip(parts, self.rules, strict=True)) else type(self)(*parts)

    def firing(self) -> Rule:
        return self._fired.firing() if self._fired is not self else self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(rule) for rule in self.rules)})"


class AnyOf(_Composite):
    """Stop when any of the rules says stop (what ``a | b`` builds).

    ``never`` is the identity of ``|``:

    Examples:
        >>> Patience(3) | never
        Patience(3)
    """

    @staticmethod
    def _combine(verdicts: Iterable[bool]) -> bool:
        return any(verdicts)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        fired: Rule | None = None
        for rule in self.rules:  # no short cut: stateful rules must see every epoch
            if rule.check(epoch, value, best, wait, improved, logs) and fired is None:
                fired = rule
        if fired is None:
            return False
        self._fired = fired
        self.reason = fired.firing().reason
        return True


class AllOf(_Composite):
    """Stop when all of the rules say stop (what ``a & b`` builds).

    ``never`` absorbs ``&``:

    Examples:
        >>> (Patience(3) & never) is never
        True
    """

    @staticmethod
    def _combine(verdicts: Iterable[bool]) -> bool:
        return all(verdicts)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        verdicts = [rule.check(epoch, value, best, wait, improved, logs) for rule in self.rules]
        if not all(verdicts):
            return False
        self._fired = self.rules[-1]
        self.reason = self.rules[-1].firing().reason
        return True

    def explain(self) -> str:
        return " and ".join(rule.firing().explain() for rule in self.rules)

    def firing(self) -> Rule:
        return self


def own_copy(rule: Rule) -> Rule:
    """A private, reset copy of ``rule`` in which every part is a distinct object.

    ``copy.deepcopy`` keeps aliasing, so a rule object used twice in one
    composition (``s | (p & s)``) would become one shared part that sees every
    epoch twice; here each use gets its own copy.

    Examples:
        >>> s = Patience(3)
        >>> mine = own_copy(s | s)
        >>> mine.rules[0] is mine.rules[1]
        False
    """
    return _distinct(copy.deepcopy(rule), set())


def _distinct(rule: Rule, seen: set[int]) -> Rule:
    if id(rule) in seen:
        rule = copy.deepcopy(rule)
    seen.add(id(rule))
    if isinstance(rule, _Composite):
        rule.rules = tuple(_distinct(part, seen) for part in rule.rules)
    rule.reset()
    return rule


def _check_rule(other: object, operator: str) -> None:
    if not isinstance(other, Rule):
        raise TypeError(f"{operator} combines stopping rules, got {type(other).__name__} ({other!r})")
