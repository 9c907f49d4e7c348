"""Field errors: what admission, the controller and the CLI report about bad input, naming the field at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: `path` is the dotted wire path (e.g. `inference.adapters[0].strength`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def summarize(errors: list[FieldError]) -> str:
    """All errors on one line, as a Status message or a condition message."""
    return "; ".join(str(error) for error in errors)
