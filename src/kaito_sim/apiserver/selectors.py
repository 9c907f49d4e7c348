"""Label and field selectors: parsed once from list/watch queries or metav1.LabelSelector, matched often."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from kaito_sim.apiserver.errors import JsonObj, bad_request

_SPECIAL = "!=(),<>"
_TOKEN = re.compile(r"\s*(==|!=|[!=(),<>]|[^\s!=(),<>]+)")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SET_OPS = {"in": "In", "notin": "NotIn"}
_VALUE_OPS = {"=": "Equals", "==": "Equals", "!=": "NotEquals", ">": "Gt", "<": "Lt"}
_EXPR_OPS = {"In", "NotIn", "Exists", "DoesNotExist"}


def _parse_error(detail: str) -> Exception:
    return bad_request(f"unable to parse requirement: {detail}")


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and _NAME.fullmatch(name) is not None
    if "/" in key:
        ok = ok and 0 < len(prefix) <= 253 and _PREFIX.fullmatch(prefix) is not None
    if not ok:
        raise _parse_error(
            f'key: Invalid value: "{key}": must be a qualified name: an optional DNS subdomain prefix '
            "and '/', then 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an "
            "alphanumeric"
        )


def _check_value(key: str, index: int, value: str) -> None:
    if value and (len(value) > 63 or _NAME.fullmatch(value) is None):
        raise _parse_error(
            f'values[{index}][{key}]: Invalid value: "{value}": a valid label must be an empty string or at '
            "most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"
        )


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term; `op` is Equals, NotEquals, In, NotIn, Exists, DoesNotExist, Gt or Lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_key(self.key)
        if self.op in ("In", "NotIn") and not self.values:
            raise _parse_error("for 'in', 'notin' operators, values set can't be empty")
        if self.op in ("Gt", "Lt") and not re.fullmatch(r"-?\d+", self.values[0]):
            raise _parse_error(f"for 'Gt', 'Lt' operators, the value must be an integer: {self.values[0]}")
        if self.op not in ("Gt", "Lt"):
            for i, value in enumerate(self.values):
                _check_value(self.key, i, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "Exists":
            return present
        if self.op == "DoesNotExist":
            return not present
        if self.op in ("NotEquals", "NotIn"):
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        if self.op in ("Gt", "Lt"):
            if not re.fullmatch(r"-?\d+", labels[self.key]):
                return False
            have, want = int(labels[self.key]), int(self.values[0])
            return have > want if self.op == "Gt" else have < want
        return labels[self.key] in self.values

    def __str__(self) -> str:
        ops = {"Equals": "=", "NotEquals": "!=", "Gt": ">", "Lt": "<"}
        if self.op == "Exists":
            return self.key
        if self.op == "DoesNotExist":
            return f"!{self.key}"
        if self.op in ops:
            return f"{self.key}{ops[self.op]}{self.values[0]}"
        keyword = "in" if self.op == "In" else "notin"
        return f"{self.key} {keyword} ({','.join(sorted(set(self.values)))})"


class _Tokens:
    """A cursor over the lexed selector; the end of input reads as the empty string."""

    def __init__(self, text: str) -> None:
        self.items: list[str] = []
        pos = 0
        while match := _TOKEN.match(text, pos):
            self.items.append(match.group(1))
            pos = match.end()
        self.pos = 0

    def peek(self) -> str:
        return self.items[self.pos] if self.pos < len(self.items) else ""

    def take(self) -> str:
        token = self.peek()
        self.pos += 1
        return token

    def identifier(self, after: str = "") -> str:
        token = self.take()
        if not token or token[0] in _SPECIAL:
            raise _parse_error(f"found '{token}', expected: identifier{after}")
        return token


def _requirement(tokens: _Tokens) -> Requirement:
    if tokens.peek() == "!":
        tokens.take()
        return Requirement(tokens.identifier(" after '!'"), "DoesNotExist")
    first = tokens.peek()
    if not first or first[0] in _SPECIAL:
        raise _parse_error(f"found '{first}', expected: !, identifier")
    key = tokens.take()
    if tokens.peek() in ("", ","):
        return Requirement(key, "Exists")
    op = tokens.take()
    if op in _SET_OPS:
        return Requirement(key, _SET_OPS[op], _set_values(tokens))
    if op in _VALUE_OPS:
        value = "" if tokens.peek() in ("", ",") else tokens.identifier()
        return Requirement(key, _VALUE_OPS[op], (value,))
    raise _parse_error(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")


def _set_values(tokens: _Tokens) -> tuple[str, ...]:
    if (token := tokens.take()) != "(":
        raise _parse_error(f"found '{token}', expected: '('")
    values: list[str] = []
    if tokens.peek() == ")":
        tokens.take()
        return ()
    while True:
        values.append("" if tokens.peek() in (",", ")") else tokens.identifier())
        token = tokens.take()
        if token == ")":
            return tuple(values)
        if token != ",":
            raise _parse_error(f"found '{token}', expected: ',', ')'")


class LabelSelector:
    """A conjunction of label requirements; the empty selector matches every object."""

    def __init__(self, requirements: Collection[Requirement] = ()) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the `labelSelector` query syntax; raises a 400 ApiError on bad syntax or names."""
        tokens = _Tokens(text)
        requirements: list[Requirement] = []
        while tokens.peek():
            requirements.append(_requirement(tokens))
            token = tokens.take()
            if token == "," and not tokens.peek():
                raise _parse_error("found '', expected: identifier after ','")
            if token not in ("", ","):
                raise _parse_error(f"found '{token}', expected: ','")
        return cls(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})"


def label_selector_from_match(selector: JsonObj) -> LabelSelector:
    """Build from a metav1.LabelSelector dict (`matchLabels`, `matchExpressions`); `{}` matches everything."""
    match_labels = selector.get("matchLabels") or {}
    requirements = [Requirement(k, "Equals", (str(v),)) for k, v in match_labels.items()]
    for expr in selector.get("matchExpressions") or []:
        op, values = expr.get("operator", ""), tuple(str(v) for v in expr.get("values") or ())
        if op not in _EXPR_OPS:
            raise bad_request(f'"{op}" is not a valid label selector operator')
        if op in ("Exists", "DoesNotExist") and values:
            raise bad_request("values set must be empty for exists and does not exist")
        requirements.append(Requirement(str(expr.get("key", "")), op, values))
    return LabelSelector(requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if ch == sep and not escaped:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
        escaped = ch == "\\" and not escaped
    parts.append("".join(current))
    return parts


def _split_term(term: str) -> tuple[str, str, str] | None:
    escaped = False
    for i, ch in enumerate(term):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i].strip(), "!=" if op == "!=" else "=", term[i + len(op) :]
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _field_value(obj: JsonObj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FieldSelector:
    """A conjunction of `field=value` / `field!=value` terms over dotted object paths."""

    def __init__(self, terms: Collection[tuple[str, str, str]] = ()) -> None:
        self.terms: tuple[tuple[str, str, str], ...] = tuple(terms)
        self.fields: frozenset[str] = frozenset(field for field, _, _ in self.terms)

    @classmethod
    def parse(cls, text: str, *, allowed: Collection[str]) -> FieldSelector:
        """Parse the `fieldSelector` query; a field outside `allowed` is a 400 like the real server's."""
        terms: list[tuple[str, str, str]] = []
        for part in _split_unescaped(text, ","):
            if not part.strip():
                continue
            term = _split_term(part)
            if term is None:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            field, op, value = term
            if field not in allowed:
                raise bad_request(f"field label not supported: {field}")
            terms.append((field, op, _unescape(value)))
        return cls(terms)

    @property
    def empty(self) -> bool:
        return not self.terms

    def equals(self, field: str) -> str | None:
        """The value an `=` term pins `field` to, if any (lets callers look up by name directly)."""
        return next((value for f, op, value in self.terms if f == field and op == "="), None)

    def matches(self, obj: JsonObj) -> bool:
        return all((_field_value(obj, field) == value) == (op == "=") for field, op, value in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({','.join(f + op + v for f, op, v in self.terms)!r})"
