"""Search filters: one syntax for every gallery backend, parsed and checked once.

```
{"label": x | [x, ...],                                   items with this label, or with one of these
 "payload": {"field": value,                              the payload field equals value
             "field": {"eq" | "ne" | "lt" | "lte" | "gt" | "gte": v, "in": [v, ...]}}}
```

Every condition is ANDed. A label is an integer or a string; a payload field is a name of letters, digits, `_` and
`-`, with `.` stepping into nested objects (`"size.width"`). `eq`, `ne` and `in` take strings, numbers or booleans;
`lt`, `lte`, `gt`, `gte` take numbers. Strings and numbers are apart: the string `"1"` never equals the number `1`;
booleans are the numbers 1 and 0 (Milvus compares JSON booleans so, and both backends must answer alike). A condition
on a field that an item lacks (or holds `null`, an object or a list) is false, `ne` included.

The local backend evaluates payload conditions in SQLite (`indexing.store`), the Milvus backend as a filter
expression (`milvus_expression`); `matches` is the same rule in Python.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from indexing.items import TLabel, check_label

Scalar = Union[str, int, float, bool]

EQUALITY_OPS = ("eq", "ne", "in")
RANGE_OPS = ("lt", "lte", "gt", "gte")
OPS = EQUALITY_OPS + RANGE_OPS
MAX_IN_VALUES = 1000
MAX_CONDITIONS = 32
MAX_LABELS = 1000
MAX_STRING_CHARS = 1024
_FIELD_PART = r"[A-Za-z_][A-Za-z0-9_-]{0,63}"
_FIELD = re.compile(rf"{_FIELD_PART}(\.{_FIELD_PART}){{0,7}}")


class FilterError(ValueError):
    """A filter that does not follow the syntax; the message names the offending part."""


@dataclass(frozen=True)
class Condition:
    """One payload condition: `field op value` (`value` is a tuple for `in`)."""

    field: str
    op: str
    value: Any

    @property
    def path(self) -> Tuple[str, ...]:
        """The field's steps into the payload object."""
        return tuple(self.field.split("."))


@dataclass(frozen=True)
class SearchFilter:
    """Which items a search may return: one of `labels` (when given) and every payload condition."""

    labels: Optional[Tuple[TLabel, ...]] = None
    conditions: Tuple[Condition, ...] = ()

    @property
    def key(self) -> str:
        """A canonical text of the filter: equal filters have equal keys (for caches and batching)."""
        labels = None if self.labels is None else sorted({_typed(label) for label in self.labels})
        conditions = sorted([c.field, c.op, _typed_value(c.value)] for c in self.conditions)
        return json.dumps([labels, conditions], sort_keys=True)

    def matches(self, label: Any, payload: Dict[str, Any]) -> bool:
        """Whether an item with this label and payload passes the filter."""
        if self.labels is not None and not any(_same(label, wanted) for wanted in self.labels):
            return False
        return all(_condition_holds(condition, payload) for condition in self.conditions)


def _typed(value: Any) -> Tuple[str, Any]:
    """`value` with its kind: numbers (booleans as 1 and 0) or strings, which never compare equal."""
    if isinstance(value, (int, float)):
        return ("n", int(value) if isinstance(value, bool) else value)
    return ("s", value)


def _typed_value(value: Any) -> Any:
    return [_typed(v) for v in value] if isinstance(value, tuple) else _typed(value)


def _same(a: Any, b: Any) -> bool:
    """Equality of two JSON scalars of the same kind (numbers and booleans, or strings)."""
    return _typed(a) == _typed(b)


def _lookup(payload: Any, path: Sequence[str]) -> Any:
    for step in path:
        if not isinstance(payload, dict) or step not in payload:
            return None
        payload = payload[step]
    return payload


def _condition_holds(condition: Condition, payload: Dict[str, Any]) -> bool:
    value = _lookup(payload, condition.path)
    if value is None or isinstance(value, (dict, list)):
        return False
    if condition.op == "eq":
        return _same(value, condition.value)
    if condition.op == "ne":
        return not _same(value, condition.value)
    if condition.op == "in":
        return any(_same(value, wanted) for wanted in condition.value)
    if not isinstance(value, (int, float)):
        return False
    return {"lt": value < condition.value, "lte": value <= condition.value, "gt": value > condition.value,
            "gte": value >= condition.value}[condition.op]


def _check_label(value: Any, where: str) -> TLabel:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise FilterError(f"{where} must be an integer or a string, got {json.dumps(value)}")
    return value


def _check_scalar(value: Any, where: str, numbers_only: bool = False) -> Scalar:
    if numbers_only:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FilterError(f"{where} must be a number, got {json.dumps(value)}")
    elif not isinstance(value, (str, int, float, bool)):
        raise FilterError(f"{where} must be a string, a number or a boolean, got {json.dumps(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{where} must be a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise FilterError(f"{where} is out of the 64-bit integer range")
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise FilterError(f"{where} has {len(value)} characters, over the limit of {MAX_STRING_CHARS}")
    return value


def _parse_labels(raw: Any) -> Tuple[TLabel, ...]:
    if isinstance(raw, list):
        if not raw:
            raise FilterError("filter.label is an empty list; give at least one label")
        if len(raw) > MAX_LABELS:
            raise FilterError(f"filter.label lists {len(raw)} labels, over the limit of {MAX_LABELS}")
        return tuple(_check_label(value, f"filter.label[{i}]") for i, value in enumerate(raw))
    return (_check_label(raw, "filter.label"),)


def _parse_field(field: Any, spec: Any) -> List[Condition]:
    where = f"filter.payload.{field}"
    if not isinstance(field, str) or not _FIELD.fullmatch(field):
        raise FilterError(f"filter.payload field {json.dumps(field)} is not a valid field name: use letters, digits, "
                          "'_' and '-' (starting with a letter or '_'), and '.' to step into nested objects")
    if not isinstance(spec, dict):
        return [Condition(field, "eq", _check_scalar(spec, where))]
    if not spec:
        raise FilterError(f"{where} is an empty object; give an operator: {', '.join(OPS)}")
    conditions = []
    for op, value in spec.items():
        if op not in OPS:
            raise FilterError(f"{where}: unknown operator {json.dumps(op)}; use one of {', '.join(OPS)}")
        if op == "in":
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}.in must be a non-empty list of values")
            if len(value) > MAX_IN_VALUES:
                raise FilterError(f"{where}.in lists {len(value)} values, over the limit of {MAX_IN_VALUES}")
            value = tuple(_check_scalar(v, f"{where}.in[{i}]") for i, v in enumerate(value))
        else:
            value = _check_scalar(value, f"{where}.{op}", numbers_only=op in RANGE_OPS)
        conditions.append(Condition(field, op, value))
    return conditions


def parse_filter(raw: Any) -> SearchFilter:
    """A `SearchFilter` from its JSON form (a dict), or `FilterError` naming what is wrong."""
    if isinstance(raw, SearchFilter):
        return raw
    if not isinstance(raw, dict):
        raise FilterError(f"filter must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"label", "payload"})
    if unknown:
        raise FilterError(f"filter has unknown fields {unknown}; it takes 'label' and 'payload'")
    labels = _parse_labels(raw["label"]) if raw.get("label") is not None else None
    payload = raw.get("payload")
    conditions: List[Condition] = []
    if payload is not None:
        if not isinstance(payload, dict) or not payload:
            raise FilterError("filter.payload must be a non-empty object of field conditions")
        for field, spec in payload.items():
            conditions.extend(_parse_field(field, spec))
    if len(conditions) > MAX_CONDITIONS:
        raise FilterError(f"filter has {len(conditions)} payload conditions, over the limit of {MAX_CONDITIONS}")
    if labels is None and not conditions:
        raise FilterError("filter is empty; give 'label' and/or 'payload'")
    return SearchFilter(labels=labels, conditions=tuple(conditions))


def as_filter(filter: Any = None, labels: Optional[Sequence[Any]] = None) -> Optional[SearchFilter]:
    """The filter of a search that names a `filter` (dict or `SearchFilter`), `labels` (any of them), or neither."""
    if filter is not None and labels is not None:
        raise FilterError("give labels or a filter, not both (a filter takes 'label')")
    if labels is not None:
        return SearchFilter(labels=_parse_labels([check_label(label) for label in labels]))
    return None if filter is None else parse_filter(filter)


# ---- Milvus ---------------------------------------------------------------------------------------------------------


def _milvus_literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _milvus_field(condition: Condition, column: str) -> str:
    return column + "".join(f'["{step}"]' for step in condition.path)  # steps are checked names: no quoting needed


def _milvus_equal_any(field: str, values: Sequence[Scalar]) -> str:
    """`field` equals one of `values` (Milvus takes no `in` on a JSON path, so an `or` of equalities)."""
    unique: Dict[Tuple[str, Any], Scalar] = {}
    for value in values:
        unique.setdefault(_typed(value), value)
    parts = [f"{field} == {_milvus_literal(value)}" for value in unique.values()]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _milvus_condition(condition: Condition, column: str) -> str:
    field = _milvus_field(condition, column)
    if condition.op == "eq":
        return _milvus_equal_any(field, [condition.value])
    if condition.op == "in":
        return _milvus_equal_any(field, condition.value)
    if condition.op == "ne":
        return f"{field} != {_milvus_literal(condition.value)}"
    symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[condition.op]
    return f"{field} {symbol} {_milvus_literal(condition.value)}"


def milvus_expression(filter: SearchFilter, label_expression: Callable[[Sequence[Any]], str],
                      column: str = "payload") -> str:
    """The Milvus boolean expression of `filter`: `label_expression(labels)` and the payload conditions on the JSON
    field `column`. Field names and values were checked by `parse_filter`, so nothing can escape the expression."""
    parts = [f"({label_expression(list(filter.labels))})"] if filter.labels is not None else []
    parts.extend(f"({_milvus_condition(condition, column)})" for condition in filter.conditions)
    return " and ".join(parts)


__all__ = ["SearchFilter", "Condition", "FilterError", "parse_filter", "as_filter", "milvus_expression", "OPS"]
