"""Which view a run gets: the live one (:mod:`cli.live`, rich) for a person at a terminal, else plain lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cli.progress import Ask, Progress, ask_on_terminal
from cli.views import plain_terminal


def wants_live(*, plain: bool, as_json: bool, verbose: bool = False) -> bool:
    """The live view only for a person at a terminal: stdout and stderr both one, no --json, no -v (its log lines
    go to stderr too), no ``--plain`` nor :func:`plain_terminal`."""
    return not (as_json or verbose or plain or plain_terminal()) and sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def progress_for(*, plain: bool, as_json: bool, verbose: bool = False) -> Iterator[tuple[Progress, Ask]]:
    """The run's progress and how it asks a person: the live view, or exactly the plain lines of before."""
    if not wants_live(plain=plain, as_json=as_json, verbose=verbose):
        yield Progress(), ask_on_terminal
        return
    from cli.live import LiveView  # rich, loaded only for a person watching
    from cli.terminal import console

    with LiveView(console(sys.stderr)) as view:
        yield view, view.pausing(ask_on_terminal)
