"""The PART and batch state machines (CONTRACT section 3), built with ``transitions``.

Each machine is built once with ``model=None``; its events are triggered on
plain state objects (``MACHINE.events[name].trigger(obj, ...)``), which keeps
folding thousands of PARTs linear. Rules are conditions: a condition receives
the ``rules`` object passed with the trigger and raises :class:`Refused` with
the reason. While folding recorded events no ``rules`` object is passed: a
recorded event is a fact, checked when it was appended.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Protocol

from ledger.errors import Refused


class PartRules(Protocol):
    def may_start(self, part: Any) -> None: ...
    def may_succeed(self, part: Any) -> None: ...


class BatchRules(Protocol):
    def may_approve(self, batch: Any) -> None: ...


def _rule(name: str):
    def condition(event: Any) -> bool:
        rules = event.kwargs.get("rules")
        if rules is not None:
            getattr(rules, name)(event.model)
        return True

    condition.__name__ = name
    return condition


PART_STATES = ["pending", "running", "succeeded", "failed", "lost"]
PART_TRANSITIONS = [
        {"trigger": "start", "source": "pending", "dest": "running", "conditions": [_rule("may_start")]},
        {"trigger": "succeed", "source": ["running", "lost", "pending", "failed"], "dest": "succeeded",
         "conditions": [_rule("may_succeed")]},
        {"trigger": "fail", "source": ["running", "lost"], "dest": "failed"},
        {"trigger": "lose", "source": "running", "dest": "lost"},
        {"trigger": "retry", "source": ["failed", "lost"], "dest": "pending"},
        {"trigger": "send_back", "source": ["succeeded", "failed", "lost", "pending"], "dest": "pending"},
        {"trigger": "import_succeeded", "source": "*", "dest": "succeeded"},
]

BATCH_STATES = ["locked", "open", "running", "awaiting_review", "approved", "rejected"]
BATCH_TRANSITIONS = [
        {"trigger": "unlock", "source": "locked", "dest": "open"},
        {"trigger": "begin", "source": "open", "dest": "running"},
        {"trigger": "settle", "source": ["open", "running"], "dest": "awaiting_review"},
        {"trigger": "unsettle", "source": "awaiting_review", "dest": "running"},
        {"trigger": "approve", "source": "awaiting_review", "dest": "approved", "conditions": [_rule("may_approve")]},
        {"trigger": "reject", "source": "awaiting_review", "dest": "rejected"},
        {"trigger": "reopen", "source": "rejected", "dest": "open"},
        {"trigger": "import_approved", "source": "*", "dest": "approved"},
]


def _build(states: list[str], transitions: list[dict[str, Any]], initial: str):
    from transitions import Machine  # imported on first use: the hot path of `kx tick` needs no machine

    return Machine(model=None, states=states, transitions=transitions, initial=initial, auto_transitions=False,
                   send_event=True)


@cache
def part_machine():
    return _build(PART_STATES, PART_TRANSITIONS, "pending")


@cache
def batch_machine():
    return _build(BATCH_STATES, BATCH_TRANSITIONS, "locked")


def fire(machine: Any, obj: Any, trigger: str, rules: Any = None, **kwargs: Any) -> None:
    """Check that ``trigger`` may fire on ``obj`` — its transition and its rules — without changing ``obj``.

    The trigger fires on a copy: state changes only when the event it leads to is recorded and folded.
    An invalid transition becomes exit 3 with the states involved.
    """
    from transitions import MachineError

    try:
        machine.events[trigger].trigger(copy.copy(obj), rules=rules, **kwargs)
    except MachineError:
        name = getattr(obj, "label", type(obj).__name__)
        allowed = sorted(t for t in machine.get_triggers(obj.state) if not t.startswith("import_"))
        raise Refused(
            f"{name} is {obj.state}: '{trigger.replace('_', ' ')}' is not possible from there"
            + (f" (possible: {', '.join(t.replace('_', ' ') for t in allowed)})" if allowed else ""),
            rule="transition",
        ) from None
