"""Request parameters declared once: they validate input and they write the OpenAPI schema.

Every endpoint lists its fields; a field parses one raw value (a query string or a JSON value) and
raises :class:`ApiError` with a 4xx status and a message that names the field, quotes the value and
states the rule. Nothing a client sends reaches the model unchecked.

>>> stride = Int("stride", "Stride of the convolution.", minimum=1, maximum=4, default=1)
>>> stride.parse("2", from_query=True)
2
>>> stride.parse(9, from_query=False)
Traceback (most recent call last):
...
deconvlab.serve.params.ApiError: stride=9: must be between 1 and 4
>>> parse_fields((stride,), {}, from_query=True)
{'stride': 1}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class ApiError(Exception):
    """A request the explorer refuses: an HTTP status (4xx, or 503 while loading or busy), why, and
    any headers to send (``Retry-After``)."""

    def __init__(self, message: str, status: int = 422, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Field:
    """One named parameter; subclasses say how to parse it and how to describe it."""

    name: str
    doc: str
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def parse(self, raw: Any, *, from_query: bool) -> Any:
        raise NotImplementedError

    def type_schema(self) -> dict:
        raise NotImplementedError

    def schema(self) -> dict:
        """The JSON schema of the field, with its description and default."""
        out = {**self.type_schema(), "description": self.doc}
        if not self.required:
            out["default"] = self.default
        return out

    def fail(self, raw: Any, rule: str) -> ApiError:
        return ApiError(f"{self.name}={raw!r}: {rule}")


@dataclass(frozen=True)
class Int(Field):
    """An integer within [minimum, maximum]; a query string must spell a plain integer."""

    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw: Any, *, from_query: bool) -> int:
        if from_query and isinstance(raw, str) and _INTEGER.fullmatch(raw):
            value = int(raw)
        elif not from_query and isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise self.fail(raw, "expected an integer")
        if self.minimum is not None and value < self.minimum:
            raise self.fail(raw, self._range_rule())
        if self.maximum is not None and value > self.maximum:
            raise self.fail(raw, self._range_rule())
        return value

    def _range_rule(self) -> str:
        if self.maximum is None:
            return f"must be >= {self.minimum}"
        if self.minimum is None:
            return f"must be <= {self.maximum}"
        return f"must be between {self.minimum} and {self.maximum}"

    def type_schema(self) -> dict:
        bounds = {"minimum": self.minimum, "maximum": self.maximum}
        return {"type": "integer", **{k: v for k, v in bounds.items() if v is not None}}


@dataclass(frozen=True)
class Bool(Field):
    """true/false (JSON booleans; "true", "false", "1", "0" in a query string)."""

    def parse(self, raw: Any, *, from_query: bool) -> bool:
        if not from_query and isinstance(raw, bool):
            return raw
        if from_query and isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
        raise self.fail(raw, "expected true or false")

    def type_schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Field):
    """One string out of a fixed list."""

    choices: tuple[str, ...] = ()

    def parse(self, raw: Any, *, from_query: bool) -> str:
        if isinstance(raw, str) and raw in self.choices:
            return raw
        raise self.fail(raw, f"expected one of {', '.join(map(repr, self.choices))}")

    def type_schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Text(Field):
    """A short string (at most ``max_length`` characters); its meaning is checked by the explorer."""

    max_length: int = 200

    def parse(self, raw: Any, *, from_query: bool) -> str:
        if not isinstance(raw, str) or not raw:
            raise self.fail(raw, "expected a non-empty string")
        if len(raw) > self.max_length:
            raise self.fail(raw[:40] + "...", f"longer than {self.max_length} characters")
        return raw

    def type_schema(self) -> dict:
        return {"type": "string", "maxLength": self.max_length}


UNIT_KEYS = ("image", "channel", "y", "x")


@dataclass(frozen=True)
class UnitList(Field):
    """A JSON list of units ``{"image": ref, "channel": c, "y": y, "x": x}`` (at most ``max_items``).

    Only the types and signs are checked here; the explorer checks the ranges against the layer.
    """

    max_items: int = 64

    def parse(self, raw: Any, *, from_query: bool) -> list[dict]:
        if not isinstance(raw, list) or not 1 <= len(raw) <= self.max_items:
            raise self.fail(raw, f"expected a list of 1 to {self.max_items} units")
        return [self._parse_unit(i, unit) for i, unit in enumerate(raw)]

    def _parse_unit(self, index: int, unit: Any) -> dict:
        where = f"{self.name}[{index}]"
        if not isinstance(unit, dict) or set(unit) != set(UNIT_KEYS):
            raise ApiError(f"{where}={unit!r}: expected an object with exactly the keys {list(UNIT_KEYS)}")
        Text(f"{where}.image", "").parse(unit["image"], from_query=False)
        for key in UNIT_KEYS[1:]:
            Int(f"{where}.{key}", "", minimum=0).parse(unit[key], from_query=False)
        return dict(unit)

    def type_schema(self) -> dict:
        item = {
            "type": "object",
            "required": list(UNIT_KEYS),
            "additionalProperties": False,
            "properties": {
                "image": {"type": "string", "description": "Image reference (see GET /api/images)."},
                "channel": {"type": "integer", "minimum": 0},
                "y": {"type": "integer", "minimum": 0, "description": "Row in the layer's output."},
                "x": {"type": "integer", "minimum": 0, "description": "Column in the layer's output."},
            },
        }
        return {"type": "array", "minItems": 1, "maxItems": self.max_items, "items": item}


def parse_fields(fields: Iterable[Field], raw: Mapping[str, Any], *, from_query: bool) -> dict[str, Any]:
    """Parse ``raw`` against ``fields``: unknown keys, missing required keys and bad values are 422s."""
    fields = tuple(fields)
    known = {field.name for field in fields}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ApiError(f"unknown parameter(s) {unknown}; expected some of {sorted(known)}")
    out = {}
    for field in fields:
        if field.name in raw:
            out[field.name] = field.parse(raw[field.name], from_query=from_query)
        elif field.required:
            raise ApiError(f"{field.name}: missing; it is required ({field.doc})")
        else:
            out[field.name] = field.default
    return out
