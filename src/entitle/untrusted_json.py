"""JSON from outside (request bodies, vendor payloads, the segments of a JWS), parsed with a depth limit.

Python's parser recurses once per nesting level: `[` x 100,000 raises RecursionError (not ValueError,
so every `except ValueError` around a parse let it through as a 500), and a few hundred levels that do
parse can still exhaust the stack later, in code that walks the document. Every untrusted document is
parsed here, and refused when it nests deeper than any real payload does (Stripe's deepest objects
nest about ten levels).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class JSONTooDeep(ValueError):
    """The document nests deeper than MAX_DEPTH; a ValueError, like any other malformed JSON."""


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, but a document nested deeper than `max_depth` raises JSONTooDeep (a ValueError)."""
    try:
        document = json.loads(data)
    except RecursionError as exc:
        raise JSONTooDeep(f"The JSON document nests deeper than {max_depth} levels.") from exc
    check_depth(document, max_depth=max_depth)
    return document


def check_depth(document: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONTooDeep when `document` nests deeper than `max_depth`; iterative, so it cannot recurse."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise JSONTooDeep(f"The JSON document nests deeper than {max_depth} levels.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
