"""The Kubernetes JSONPath subset that CRD printer columns and kubectl use, evaluated over decoded JSON."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_INDEX = re.compile(r"\s*(-?\d*)\s*(?::\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?)?")
_NAME = re.compile(r"""(?:\\.|[^.\[\]()\\\s'"=!<>@])+""")
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


class _Step(Protocol):
    def apply(self, value: Any) -> Iterator[Any]: ...


@dataclass(frozen=True)
class _Field:
    name: str

    def apply(self, value: Any) -> Iterator[Any]:
        if isinstance(value, dict) and self.name in value:
            yield value[self.name]


@dataclass(frozen=True)
class _Wildcard:
    def apply(self, value: Any) -> Iterator[Any]:
        if isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, list):
            yield from value


@dataclass(frozen=True)
class _Descend:
    """`..`: the value itself and everything below it, depth first; the next step picks from these."""

    def apply(self, value: Any) -> Iterator[Any]:
        yield value
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            yield from self.apply(child)


@dataclass(frozen=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int | None
    single: bool

    def apply(self, value: Any) -> Iterator[Any]:
        if not isinstance(value, list):
            return
        if self.single:
            index = self.start or 0
            if -len(value) <= index < len(value):
                yield value[index]
        else:
            yield from value[self.start : self.stop : self.step]


@dataclass(frozen=True)
class _Literal:
    value: Any


_Operand = tuple[_Step, ...] | _Literal


@dataclass(frozen=True)
class _Filter:
    """`[?(@.a op literal)]`, or `[?(@.a)]` (the path exists), kept per list item."""

    left: _Operand
    op: str
    right: _Operand

    def apply(self, value: Any) -> Iterator[Any]:
        if not isinstance(value, list):
            return
        for item in value:
            lefts = _operand(self.left, item)
            if not self.op:
                if lefts:
                    yield item
                continue
            rights = _operand(self.right, item)
            if any(_compare(a, self.op, b) for a in lefts for b in rights):
                yield item


def _operand(operand: _Operand, item: Any) -> list[Any]:
    if isinstance(operand, _Literal):
        return [operand.value]
    return _run(operand, item)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(a: Any, op: str, b: Any) -> bool:
    if op in ("==", "!="):
        same = a == b if _is_number(a) and _is_number(b) else type(a) is type(b) and a == b
        return same == (op == "==")
    if not (_is_number(a) and _is_number(b)) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return _ORDER[op](a, b)


def _run(steps: tuple[_Step, ...], root: Any) -> list[Any]:
    results = [root]
    for step in steps:
        results = [found for value in results for found in step.apply(value)]
    return results


class _Parser:
    def __init__(self, text: str, whole: str) -> None:
        self.text, self.whole, self.pos = text, whole, 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"invalid JSONPath {self.whole!r}: {why} at offset {self.pos}")

    def steps(self) -> tuple[_Step, ...]:
        out: list[_Step] = []
        while self.pos < len(self.text):
            if self.text.startswith("..", self.pos):
                self.pos += 2
                out.append(_Descend())
                if self.text.startswith("[", self.pos):
                    continue
                out.append(self.name())
            elif self.text[self.pos] == ".":
                self.pos += 1
                if self.pos < len(self.text) or out:
                    out.append(self.name())
            elif self.text[self.pos] == "[":
                out.append(self.bracket())
            else:
                raise self.fail(f"unexpected character {self.text[self.pos]!r}")
        return tuple(out)

    def name(self) -> _Step:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a field name")
        self.pos = match.end()
        name = re.sub(r"\\(.)", r"\1", match.group(0))
        return _Wildcard() if name == "*" else _Field(name)

    def bracket(self) -> _Step:
        end = _closing(self.text, self.pos, self.fail)
        step = self.subscript(self.text[self.pos + 1 : end].strip())
        self.pos = end + 1
        return step

    def subscript(self, inner: str) -> _Step:
        if inner == "*":
            return _Wildcard()
        if inner[:1] in ("'", '"'):
            if len(inner) < 2 or inner[-1] != inner[0]:
                raise self.fail(f"bad quoted key [{inner}]")
            return _Field(inner[1:-1])
        if inner.startswith("?"):
            return self.filter(inner[1:].strip())
        match = _INDEX.fullmatch(inner)
        if not inner or match is None:
            raise self.fail(f"unsupported subscript [{inner}]")
        start, stop, step = (int(g) if g else None for g in match.groups())
        if step == 0:
            raise self.fail("slice step cannot be 0")
        return _Slice(start, stop, step, single=":" not in inner)

    def filter(self, text: str) -> _Step:
        if not (text.startswith("(") and text.endswith(")")):
            raise self.fail(f"filter must be written ?(...), got ?{text}")
        body = text[1:-1].strip()
        op, at = _find_operator(body)
        if not op:
            return _Filter(self.operand(body), "", _Literal(None))
        return _Filter(self.operand(body[:at].strip()), op, self.operand(body[at + len(op) :].strip()))

    def operand(self, text: str) -> _Operand:
        if text.startswith("@"):
            return _Parser(text[1:], self.whole).steps()
        if len(text) >= 2 and text[0] in ("'", '"') and text[-1] == text[0]:
            return _Literal(text[1:-1])
        if text in ("true", "false", "null"):
            return _Literal({"true": True, "false": False, "null": None}[text])
        if _NUMBER.fullmatch(text):
            return _Literal(float(text) if any(c in text for c in ".eE") else int(text))
        raise self.fail(f"bad filter operand {text!r}")


def _closing(text: str, start: int, fail: Callable[[str], ValueError]) -> int:
    """Index of the `]` closing the `[` at `start`, skipping quoted text and nested brackets."""
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in ("'", '"'):
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0:
                return i
    raise fail("unterminated '['")


def _find_operator(body: str) -> tuple[str, int]:
    quote = ""
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in ("'", '"'):
            quote = ch
        else:
            for op in _COMPARISONS:
                if body.startswith(op, i):
                    return op, i
    return "", -1


@dataclass(frozen=True)
class JsonPath:
    """A compiled expression; `find` returns every match (an empty list when the path is missing)."""

    expr: str
    steps: tuple[_Step, ...]

    def find(self, obj: Any) -> list[Any]:
        return _run(self.steps, obj)


@functools.lru_cache(maxsize=512)
def parse(expr: str) -> JsonPath:
    """Compile `expr` (`.a.b`, optionally inside `{}`); raises ValueError on a syntax error."""
    text = expr.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ValueError(f"invalid JSONPath {expr!r}: unclosed '{{'")
        text = text[1:-1].strip()
    if not text:
        raise ValueError(f"invalid JSONPath {expr!r}: empty expression")
    text = text.removeprefix("$")
    if text and text[0] not in ".[":
        text = "." + text
    return JsonPath(expr, _Parser(text, expr).steps())


def evaluate(obj: Any, expr: str) -> list[Any]:
    """All values `expr` selects in `obj`; [] when nothing matches. Raises ValueError on bad syntax."""
    return parse(expr).find(obj)
