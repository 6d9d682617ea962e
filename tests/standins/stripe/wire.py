"""Stripe's wire format: bracketed form keys in, error bodies and list objects out.

Stripe's SDKs send `items[0][price]=...` (indexed arrays), browsers and curl send `expand[]=...`
(appended arrays); both decode to the same nested structure here.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_KEY_PART = re.compile(r"\[([^\]]*)\]")
_ALNUM = string.ascii_letters + string.digits


class StandinError(Exception):
    """An error answered the way Stripe answers it: a status and `{"error": {...}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param
        if decline_code:
            self.body["error"]["decline_code"] = decline_code


def missing(kind: str, object_id: str, param: str = "id") -> StandinError:
    return StandinError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def require(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise StandinError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    return value


def as_bool(value: Any, param: str) -> bool:
    if value in (True, "true"):
        return True
    if value in (False, "false"):
        return False
    raise StandinError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param)


def as_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StandinError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALNUM) for _ in range(length))}"


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn `a[b][0][c]=v` and `a[]=v` pairs into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StandinError(400, f"Invalid array or hash: {key}", param=key)
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def list_page(
    items: list[dict[str, Any]],
    params: Mapping[str, Any],
    url: str,
    render: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    positions: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A Stripe list object: newest first, `limit` (1-100, default 10), `starting_after`/`ending_before`.

    With `positions` (id to index), `items` is already in list order (`State.listing`)."""
    limit = as_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StandinError(
            400, "Limit must be between 1 and 100.", code="parameter_invalid_integer", param="limit"
        )
    if positions is None:
        ordered = sorted(items, key=lambda o: (o.get("created", 0), o.get("_seq", 0)), reverse=True)
        positions = {o["id"]: index for index, o in enumerate(ordered)}
    else:
        ordered = items
    if after := params.get("starting_after"):
        if after not in positions:
            raise missing("object", after, "starting_after")
        ordered = ordered[positions[after] + 1 :]
    elif before := params.get("ending_before"):
        if before not in positions:
            raise missing("object", before, "ending_before")
        ordered = ordered[: positions[before]][-limit:]
    page = ordered[:limit]
    return {
        "object": "list",
        "data": [render(o) for o in page],
        "has_more": len(ordered) > limit,
        "url": url,
    }
