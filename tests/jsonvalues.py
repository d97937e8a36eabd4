"""Hypothesis helpers shared by the property tests: arbitrary JSON values and the paths into a value."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
"""JSON values a client can send (finite numbers: an HTTP client cannot encode NaN or infinity)."""


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value``, the empty path (the value itself) first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutate(value: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced (or deleted; the root can only be replaced)."""
    if not path:
        return replacement
    result = copy.deepcopy(value)
    target = result
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = replacement
    return result
