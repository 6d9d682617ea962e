"""Events: Stripe's signature scheme, the event log, and delivery to webhook endpoints.

Stripe signs `"{t}.{payload}"` with HMAC-SHA256 under the endpoint's `whsec_...` secret and sends
`Stripe-Signature: t=<unix seconds>,v1=<hex>`. Delivery happens on a background thread, as at
Stripe: the request that caused an event has answered before the endpoint hears of it, which is
also what keeps a receiver that calls back into the stand-in from deadlocking.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .catalog import _merge_metadata
from .wire import as_bool, as_list, list_page, new_id, require

if TYPE_CHECKING:
    from .state import State


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


@dataclass
class Endpoint:
    url: str
    secret: str
    enabled_events: list[str] = field(default_factory=lambda: ["*"])
    # False once disabled (`disabled=true`) or deleted: Stripe sends it nothing more.
    enabled: bool = True

    def wants(self, event_type: str) -> bool:
        return self.enabled and ("*" in self.enabled_events or event_type in self.enabled_events)


@dataclass
class Delivery:
    event_id: str
    event_type: str
    url: str
    status: int | None
    error: str | None = None


class EventLog:
    """Every event emitted, in emission order, and the deliveries made of them."""

    def __init__(self, default_secret: str) -> None:
        self.default_secret = default_secret
        self.log: list[dict[str, Any]] = []
        self.endpoints: list[Endpoint] = []
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[dict[str, Any], Endpoint] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(event)
        for endpoint in list(self.endpoints):
            if endpoint.wants(event["type"]):
                self._queue.put((event, endpoint))

    def deliver_to(self, url: str, secret: str | None = None, events: list[str] | None = None) -> Endpoint:
        """POST every future event to `url`, signed with `secret` (default: the stand-in's)."""
        endpoint = Endpoint(url, secret or self.default_secret, events or ["*"])
        self.endpoints.append(endpoint)
        self._ensure_thread()
        return endpoint

    def signed(
        self, event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Stripe would POST for `event`."""
        body = encode(event)
        header = sign(body, secret or self.default_secret, timestamp)
        return body, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["type"] in types]

    def types(self) -> list[str]:
        return [e["type"] for e in self.log]

    def wait_delivered(self, timeout: float = 30.0) -> None:
        """Block until every queued delivery has been attempted."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("stand-in webhook deliveries still pending")
            time.sleep(0.01)

    def redeliver_failed(self) -> None:
        """Send again every event whose last delivery failed, as Stripe's retries would."""
        last: dict[tuple[str, str], Delivery] = {}
        for d in self.deliveries:
            last[(d.event_id, d.url)] = d
        by_id = {e["id"]: e for e in self.log}
        for (event_id, url), d in last.items():
            if d.status is None or d.status >= 300:
                endpoint = next(ep for ep in self.endpoints if ep.url == url)
                self._queue.put((by_id[event_id], endpoint))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stripe-standin-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while (item := self._queue.get()) is not None:
                event, endpoint = item
                body, headers = self.signed(event, secret=endpoint.secret)
                try:
                    response = client.post(endpoint.url, content=body, headers=headers)
                    delivery = Delivery(event["id"], event["type"], endpoint.url, response.status_code)
                except httpx.HTTPError as exc:
                    delivery = Delivery(event["id"], event["type"], endpoint.url, None, repr(exc))
                with self._lock:
                    self.deliveries.append(delivery)
                self._queue.task_done()
            self._queue.task_done()


# --- HTTP: /v1/webhook_endpoints and /v1/events ------------------------------------------------------
# Each webhook endpoint object has its own delivery `Endpoint` (its URL, its own secret, its events);
# objects keep it under `_hidden`, beside the secret Stripe shows only in the creating answer.
def create_webhook_endpoint(state: State, params: dict[str, Any]) -> dict[str, Any]:
    url = require(params, "url")
    enabled = as_list(require(params, "enabled_events"))
    secret = new_id("whsec", 32)
    delivery = state.events.deliver_to(url, secret, enabled)
    obj = state.add(
        {
            "object": "webhook_endpoint",
            "api_version": params.get("api_version"),
            "application": None,
            "description": params.get("description"),
            "enabled_events": enabled,
            "livemode": state.request_livemode,
            "metadata": params.get("metadata") or {},
            "status": "enabled",
            "url": url,
            "_hidden": {"secret": secret},
            "_delivery": delivery,
        },
        "we",
    )
    # The secret is returned once, on creation, as at Stripe.
    return {**state.render(obj), "secret": secret}


def retrieve_webhook_endpoint(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(_live_endpoint(state, id))


def update_webhook_endpoint(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    obj = _live_endpoint(state, id)
    delivery: Endpoint = obj["_delivery"]
    if "enabled_events" in params:
        obj["enabled_events"] = delivery.enabled_events = as_list(params["enabled_events"])
    if "url" in params:
        obj["url"] = delivery.url = require(params, "url")
    if "description" in params:
        obj["description"] = params["description"] or None
    if "metadata" in params:
        obj["metadata"] = _merge_metadata(obj["metadata"], params["metadata"])
    if "disabled" in params:
        disabled = as_bool(params["disabled"], "disabled")
        obj["status"] = "disabled" if disabled else "enabled"
        delivery.enabled = not disabled
    return state.render(obj)


def delete_webhook_endpoint(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    obj = _live_endpoint(state, id)
    obj["_delivery"].enabled = False
    del state.objects[id]
    state.forget_listing("webhook_endpoint")
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


def list_webhook_endpoints(state: State, params: dict[str, Any]) -> dict[str, Any]:
    return list_page(state.all("webhook_endpoint"), params, "/v1/webhook_endpoints", state.render)


def _live_endpoint(state: State, id: str) -> dict[str, Any]:
    return state.get(id, "webhook_endpoint", label="webhook endpoint")


def retrieve_event(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "event"))


def list_events(state: State, params: dict[str, Any]) -> dict[str, Any]:
    events = state.all("event")
    if t := params.get("type"):
        events = [e for e in events if e["type"] == t]
    return list_page(events, params, "/v1/events", state.render)


ROUTES = [
    ("POST", "/v1/webhook_endpoints", create_webhook_endpoint),
    ("GET", "/v1/webhook_endpoints", list_webhook_endpoints),
    ("GET", "/v1/webhook_endpoints/{id}", retrieve_webhook_endpoint),
    ("POST", "/v1/webhook_endpoints/{id}", update_webhook_endpoint),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete_webhook_endpoint),
    ("GET", "/v1/events/{id}", retrieve_event),
    ("GET", "/v1/events", list_events),
]
