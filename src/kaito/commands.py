"""Subcommands other distributions add to `kaito` (the local cluster's `sim` and demos), found by entry point.

`kaito` never imports them by name: a distribution lists `Command` objects under the `kaito.commands`
entry-point group, and the CLI loads one only when it is asked for (or when listing every command).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

GROUP = "kaito.commands"


@dataclass(frozen=True)
class Command:
    """One `kaito NAME` subcommand: its help line, its flags, and what runs it (returning the exit code)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def plugin_commands(wanted: str | None = None) -> dict[str, Command]:
    """The installed distributions' commands by name; with a `wanted` they hold, only that one is imported."""
    points = list(entry_points(group=GROUP))
    if any(point.name == wanted for point in points):
        points = [point for point in points if point.name == wanted]
    found: dict[str, Command] = {}
    for point in points:
        command = point.load()
        if not isinstance(command, Command):
            raise TypeError(f"entry point {point.name} = {point.value} in {GROUP} is not a kaito.commands.Command")
        found[point.name] = command
    return found
