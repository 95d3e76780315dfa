"""Every command's and group's --help shows an example of its use and kx's global options."""

from __future__ import annotations

import re

import click
import pytest

from cli.main import cli

GLOBAL_OPTIONS = ("--ledger", "--plan", "--json", "-v, --verbose")


def every_command(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from every_command(sub, (*path, name))


COMMANDS = list(every_command(cli))


def test_the_walk_reaches_nested_subcommands():
    paths = [path for path, _ in COMMANDS]
    assert () in paths and ("plan", "import") in paths and ("audit", "repair-guard") in paths and ("run",) in paths
    assert len(paths) > 25


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda path: " ".join(("kx", *path)))
def test_help_has_an_example_and_the_global_options(kx, path):
    result = kx(*path, "--help")
    assert result.code == 0, result.err
    text = result.text
    heading = re.search(r"^  Example:\n\n", text, re.MULTILINE)
    assert heading, text
    example = text[heading.end():].split("\nOptions:", 1)[0]
    assert example.startswith("      kx"), example  # indented under its heading, as sqlite-utils writes them
    assert " ".join(("kx", *path)) in example, example  # the example runs this very command
    globals_section = text.split("Global options", 1)[1]
    for option in GLOBAL_OPTIONS:
        assert option in globals_section, (option, text)


def test_examples_keep_their_lines(kx):
    """Click rewraps a paragraph unless it starts with \\b: each example stays on its own line."""
    text = kx("reopen", "--help").text
    assert '\n      kx reopen PART-1 PART-3 --reason "stamped Completed without evidence"\n' in text
    review = kx("review", "--help").text
    assert '\n      kx review 2 --approve --note "drops read"\n      kx review 2 --reject PART-8' in review
