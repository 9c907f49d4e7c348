"""Resource quantities (`500m`, `1.5Gi`, `1e3`) parsed exactly and printed in kube-apiserver's canonical form.

The simulated API server compares requests with limits and quotes quantities in its error messages the way
apimachinery's `resource.Quantity` does: exact arithmetic, values rounded up to nano precision, and
`String()` choosing the largest SI or binary suffix that keeps the number whole (`2000m` -> `2`, `0.5` -> `500m`,
`1.5Gi` -> `1536Mi`); binary values below 1024 or with a fraction are printed with SI suffixes instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SPLIT = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = {bits // 10: suffix for suffix, bits in _BINARY.items()}
_NANO = Fraction(1, 10**9)


class QuantityError(ValueError):
    """Not a quantity; the message is apimachinery's."""


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    format: str  # "BinarySI", "DecimalSI" or "DecimalExponent", from the suffix it was written with

    def __str__(self) -> str:
        if self.value == 0:
            return "0"
        if self.format == "BinarySI" and abs(self.value) >= 1024 and self.value.denominator == 1:
            return _base1024(int(self.value))
        return _base10(self.value, exponent_form=self.format == "DecimalExponent")


def parse_quantity(raw: object) -> Quantity:
    """A quantity from a manifest's string or JSON number; raises `QuantityError` as decoding would."""
    text = str(raw).strip() if isinstance(raw, str | int | float) and not isinstance(raw, bool) else ""
    split = _SPLIT.match(text)
    if split is None or _NUMBER.match(split.group(1)) is None:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = Fraction(split.group(1)), split.group(2)
    if suffix in _BINARY:
        value, fmt = number * 2 ** _BINARY[suffix], "BinarySI"
    elif suffix in _DECIMAL:
        value, fmt = number * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"
    elif (exponent := _EXPONENT.match(suffix)) is not None:
        value, fmt = number * Fraction(10) ** int(exponent.group(1)), "DecimalExponent"
    else:
        raise QuantityError(SUFFIX_ERROR)
    rounded = math.ceil(abs(value) / _NANO) * _NANO  # nano precision, rounded away from zero
    return Quantity(rounded if value >= 0 else -rounded, fmt)


def _base10(value: Fraction, *, exponent_form: bool) -> str:
    """Whole mantissa and a power-of-ten exponent that is a multiple of 3, as large as keeps the mantissa whole."""
    exponent = -9
    mantissa = value * 10**9
    while mantissa.denominator == 1 and mantissa % 1000 == 0 and mantissa != 0:
        mantissa, exponent = mantissa / 1000, exponent + 3
    number = str(int(mantissa))
    if exponent_form:
        return number if exponent == 0 else f"{number}e{exponent}"
    suffix = _DECIMAL_SUFFIX.get(exponent)
    return f"{number}{suffix}" if suffix is not None else f"{number}e{exponent}"


def _base1024(value: int) -> str:
    steps = 0
    while value % 1024 == 0 and steps < max(_BINARY_SUFFIX):
        value, steps = value // 1024, steps + 1
    return f"{value}{_BINARY_SUFFIX.get(steps, '')}"
