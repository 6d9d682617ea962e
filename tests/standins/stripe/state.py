"""The stand-in's memory: every object by id, expansion, the clock, and event emission.

Objects are stored with references as ids (a subscription's `latest_invoice` is `in_...`), the
way Stripe returns them unless `expand` asks otherwise. Fields Stripe only returns when expanded
(an invoice's `confirmation_secret`) live under `_hidden`. One re-entrant lock guards everything:
the HTTP server thread and the test's own calls into the simulation helpers share this state.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from .events import EventLog
from .wire import StandinError, missing, new_id

# Fields Stripe always returns as full objects, never as ids.
_ALWAYS_EXPANDED: dict[str, list[str]] = {
    "subscription": ["items.data.price"],
    "subscription_item": ["price"],
    "item": ["price"],
}


@dataclass
class KeyGrant:
    """What one API key may do: its mode, and for a restricted key the permissions it was given."""

    livemode: bool = False
    # None: a secret key, allowed everything; else `rak_<resource>_<read|write>` names.
    permissions: set[str] | None = None


class State:
    def __init__(self, *, secret_key: str, api_version: str, events: EventLog) -> None:
        self.lock = threading.RLock()
        self.secret_key = secret_key
        # Every key the stand-in answers to; any other gets Stripe's 401.
        self.keys: dict[str, KeyGrant] = {secret_key: KeyGrant()}
        # The mode of the key making the request being answered (set under the lock, per request).
        self.request_livemode = False
        self.api_version = api_version
        self.events = events
        # Where the stand-in answers (set when its server starts): hosted pages' URLs point here.
        self.base_url = ""
        self.objects: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        # Seconds added to the wall clock: simulated renewals move time forward, not the test's clock.
        self.clock_offset = 0
        # How many of the next API requests answer 429, for backoff tests.
        self.rate_limit_next = 0
        # The `Retry-After` (seconds) those injected 429s carry; Stripe itself sends none.
        self.rate_limit_retry_after: float | None = None
        # Payment methods that decline every charge (the 4000000000000341 test card, in effect).
        self.declining_payment_methods: set[str] = set()
        # (method, path template) pairs answered as Stripe answers an unknown URL: a minimal
        # Stripe-compatible server, for tests that entitle degrades gracefully without them.
        self.unimplemented: set[tuple[str, str]] = set()
        # Answer 400 to any request that carries `expand`, as a server without expansion might.
        self.refuse_expand = False
        self._seq = itertools.count()
        # Per kind, the objects newest first and each id's position there, until the next `add`: a
        # sync pages through 100,000 subscriptions, and sorting them all for each page would make the
        # stand-in, not the client, the slow side.
        self._listings: dict[str, tuple[list[dict[str, Any]], dict[str, int]]] = {}

    # --- clock -------------------------------------------------------------------------------------
    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def advance(self, seconds: int) -> None:
        with self.lock:
            self.clock_offset += seconds

    # --- objects -----------------------------------------------------------------------------------
    def add(self, obj: dict[str, Any], prefix: str | None = None, *, id_length: int = 24) -> dict[str, Any]:
        with self.lock:
            if "id" not in obj or obj["id"] is None:
                obj["id"] = new_id(prefix or "obj", id_length)
            obj.setdefault("created", self.now())
            obj.setdefault("livemode", False)
            obj["_seq"] = next(self._seq)
            self.objects[obj["id"]] = obj
            self._listings.pop(obj.get("object", ""), None)
            return obj

    def forget_listing(self, kind: str) -> None:
        with self.lock:
            self._listings.pop(kind, None)

    def get(self, object_id: str, kind: str, *, label: str | None = None) -> dict[str, Any]:
        obj = self.objects.get(object_id)
        if obj is None or obj.get("object") != kind:
            raise missing(label or kind.replace("_", " "), object_id)
        return obj

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o.get("object") == kind]

    def listing(self, kind: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Every object of `kind` in list order (newest first) and each id's index in it; cached."""
        with self.lock:
            cached = self._listings.get(kind)
            if cached is None:
                ordered = sorted(self.all(kind), key=newest_first_key, reverse=True)
                cached = ordered, {o["id"]: index for index, o in enumerate(ordered)}
                self._listings[kind] = cached
            return cached

    # --- rendering ---------------------------------------------------------------------------------
    def render(self, obj: dict[str, Any], expand: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        out = _public(obj)
        for path in [*_ALWAYS_EXPANDED.get(obj.get("object", ""), []), *expand]:
            self._expand(out, path.split("."), path)
        return out

    def _expand(self, node: Any, segs: list[str], path: str) -> None:
        if not segs or not isinstance(node, dict):
            return
        if node.get("object") == "list" and segs[0] == "data":
            for element in node.get("data", []):
                self._expand(element, segs[1:], path)
            return
        seg, rest = segs[0], segs[1:]
        value = node.get(seg)
        stored = self.objects.get(node.get("id") or "")
        if isinstance(value, list):
            # An array of expandable ids (a subscription's `discounts`): each element expands.
            for index, element in enumerate(value):
                if isinstance(element, str) and element in self.objects:
                    value[index] = self.render(self.objects[element])
                self._expand(value[index], rest, path)
            return
        if value is None and stored is not None and seg in stored.get("_hidden", {}):
            value = node[seg] = copy.deepcopy(stored["_hidden"][seg])
        elif isinstance(value, str) and value in self.objects:
            value = node[seg] = self.render(self.objects[value])
        elif seg not in node:
            raise StandinError(
                400, f"This property cannot be expanded ({path}).", code="parameter_invalid", param="expand"
            )
        self._expand(value, rest, path)

    # --- events ------------------------------------------------------------------------------------
    def snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.render(obj)

    def emit(
        self,
        type: str,
        obj: dict[str, Any],
        before: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record an event whose `data.object` is a snapshot taken now, as Stripe's events are."""
        with self.lock:
            after = self.snapshot(obj)
            data: dict[str, Any] = {"object": after}
            if before is not None:
                data["previous_attributes"] = {
                    k: before.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)
                }
            event = {
                "id": new_id("evt"),
                "object": "event",
                "api_version": self.api_version,
                "created": self.now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": len(self.events.endpoints),
                "request": {"id": new_id("req", 14), "idempotency_key": idempotency_key},
                "type": type,
            }
            self.add(event)
            self.events.record(_public(event))
            return event


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def newest_first_key(obj: dict[str, Any]) -> tuple[int, int]:
    """Stripe lists newest first; objects created in the same second, in the order they were made."""
    return obj.get("created", 0), obj.get("_seq", 0)
