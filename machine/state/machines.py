"""The PART and batch state machines (CONTRACT section 3), built with ``transitions``.

The fold moves every PART and batch by firing these machines' triggers: the
destinations come from the tables below, never from the fold. Each machine is
built once with ``model=None``; its triggers fire on plain state objects
(``machine.events[name].trigger(obj, ...)``), which keeps folding thousands of
PARTs linear.

Conditions are of two kinds. *Facts* (a batch's PARTs all settled, every batch
before it approved) are asked of the ``plan`` passed with every trigger and
decide where a batch goes. *Rules* (the limit, the gate, the evidence) are
asked of the ``rules`` object passed when an act or ``kx audit verify`` checks
an event; they raise :class:`Refused` with the reason. While folding recorded
events no ``rules`` object is passed: a recorded event is a fact, checked when
it was appended (and again by the audit).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from ledger.errors import Refused


def _rule(name: str):
    def condition(event: Any) -> bool:
        rules = event.kwargs.get("rules")
        if rules is not None:
            getattr(rules, name)(event.model)
        return True

    condition.__name__ = name
    return condition


def _fact(name: str):
    def condition(event: Any) -> bool:
        return getattr(event.kwargs["plan"], name)(event.model)

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
    {"trigger": "reopen", "source": ["succeeded", "failed", "lost"], "dest": "pending"},
    {"trigger": "import_succeeded", "source": "*", "dest": "succeeded"},
]

BATCH_STATES = ["locked", "open", "running", "awaiting_review", "approved", "rejected"]
BATCH_TRANSITIONS = [
    # "advance" follows the batch's PARTs and the batches before it; the first transition whose facts hold wins
    {"trigger": "advance", "source": ["open", "running", "awaiting_review"], "dest": "locked",
     "unless": [_fact("earlier_approved")]},
    {"trigger": "advance", "source": "locked", "dest": "open", "conditions": [_fact("earlier_approved")]},
    {"trigger": "advance", "source": ["open", "running"], "dest": "awaiting_review",
     "conditions": [_fact("all_settled")]},
    {"trigger": "advance", "source": "open", "dest": "running", "conditions": [_fact("has_moved")]},
    {"trigger": "advance", "source": "awaiting_review", "dest": "running", "unless": [_fact("all_settled")]},
    {"trigger": "approve", "source": "awaiting_review", "dest": "approved", "conditions": [_rule("may_approve")]},
    {"trigger": "reject", "source": "awaiting_review", "dest": "rejected"},
    {"trigger": "reopen", "source": "rejected", "dest": "open"},
    # a PART of the batch reopened: an approved batch needs review again; elsewhere "advance" follows the PARTs
    {"trigger": "part_reopened", "source": "approved", "dest": "open"},
    {"trigger": "part_reopened", "source": ["locked", "open", "running", "awaiting_review"], "dest": None},
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


def allows(machine: Any, obj: Any, trigger: str) -> bool:
    """Whether ``trigger`` has a transition from ``obj``'s state (its conditions aside)."""
    return trigger in machine.get_triggers(obj.state)


def fire(machine: Any, obj: Any, trigger: str, rules: Any = None, **kwargs: Any) -> None:
    """Check that ``trigger`` may fire on ``obj`` — its transition and its rules — without changing ``obj``.

    The trigger fires on a copy: state changes only when the event it leads to is recorded and folded.
    An invalid transition becomes exit 3 naming the commands that are possible from there.
    """
    if not allows(machine, obj, trigger):
        raise Refused(not_possible(machine, obj, trigger, getattr(rules, "state", None)), rule="transition")
    machine.events[trigger].trigger(copy.copy(obj), rules=rules, **kwargs)


# the command a person runs to fire each trigger, as typed (the other triggers are kx's own housekeeping)
PART_COMMANDS = {"start": "kx start {part}", "succeed": "kx finish {part}", "fail": "kx fail {part} --reason TEXT",
                 "retry": "kx retry {part}", "send_back": "kx review {batch} --reject {part}",
                 "reopen": "kx reopen {part} --reason TEXT"}
BATCH_COMMANDS = {"approve": "kx review {batch} --approve", "reject": "kx review {batch} --reject"}


def command_for(obj: Any, trigger: str) -> str | None:
    """The command line that fires ``trigger`` on a PART or a batch, or None when no command does."""
    part = getattr(obj, "id", None)  # a PART has an id and a batch; a batch, a number
    template = (PART_COMMANDS if part else BATCH_COMMANDS).get(trigger)
    return template.format(part=part, batch=getattr(obj, "batch", getattr(obj, "number", None))) if template else None


def not_possible(machine: Any, obj: Any, trigger: str, plan: Any = None) -> str:
    """Why ``trigger`` may not fire on ``obj``, and the commands that may, each as it is typed.

    Sending a PART back is offered only when ``plan`` (the folded state) shows its batch awaiting review,
    the one time 'kx review N --reject' takes it."""
    name = getattr(obj, "label", type(obj).__name__)
    possible = [command_for(obj, t) for t in machine.get_triggers(obj.state)
                if t != trigger and (t != "send_back" or _reviewable(plan, obj))]
    tried = command_for(obj, trigger) or trigger.replace("_", " ")
    shown = ", ".join(f"'{command}'" for command in dict.fromkeys(filter(None, possible)))
    return (f"{name} is {obj.state.replace('_', ' ')}: '{tried}' is not possible from there"
            + (f" (possible: {shown})" if shown else ""))


def _reviewable(plan: Any, part: Any) -> bool:
    batch = plan.batches.get(part.batch) if plan is not None else None
    return batch is not None and batch.state == "awaiting_review"
