"""Errors that the CLI turns into one line on stderr and an exit code."""

from __future__ import annotations

import signal
from dataclasses import dataclass


class NextbestError(Exception):
    """An expected failure with a message meant for the user; ``exit_code`` for the CLI."""

    exit_code = 1


class BadInputError(NextbestError):
    """The input (a file, a folder, an argument) is wrong: exit code 2."""

    exit_code = 2


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: a ``BaseException``, so ``except Exception`` handlers let it
    through while ``finally`` blocks and context managers still clean up."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")


@dataclass(frozen=True)
class Violation:
    """One broken contract rule: where, what, how many rows, and a few example values."""

    table: str
    column: str | None
    problem: str
    rows: int = 0
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.problem}"
        if self.rows:
            text += f" ({self.rows:,} row{'s' if self.rows != 1 else ''})"
        if self.examples:
            text += f"; e.g. {', '.join(self.examples)}"
        return text


class ContractError(BadInputError):
    """A dataset breaks the data contract; carries every violation found."""

    def __init__(self, violations: list[Violation], source: str = "dataset") -> None:
        self.violations = list(violations)
        self.source = source
        first = str(self.violations[0]) if self.violations else "invalid"
        more = len(self.violations) - 1
        suffix = f" (+{more} more violation{'s' if more != 1 else ''})" if more else ""
        super().__init__(f"{source} breaks the data contract: {first}{suffix}")
