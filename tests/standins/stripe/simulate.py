"""What happens at Stripe without an API call from us: people paying, time passing, banks declining.

Each helper changes the stand-in's truth and emits the events Stripe would, so tests can drive a
subscription through its life and then deliver the events in any order they like.
"""

from __future__ import annotations

from typing import Any

from .billing import latest_charge, refund_charge, require_action
from .checkout import complete_session
from .customers import delete_customer, make_card
from .payments import charge_intent, close_dispute, open_dispute
from .state import State
from .subscriptions import confirm_setup_intent, end_subscription, item_of, pause, renew, settle
from .wire import StandinError

# Stripe sends `customer.subscription.trial_will_end` three days before `trial_end`.
TRIAL_WILL_END_NOTICE = 3 * 86400


class Simulations:
    state: State

    def _sub(self, sub_id: str) -> dict[str, Any]:
        return self.state.get(sub_id, "subscription")

    def complete_checkout(
        self,
        session_id: str,
        card: str = "4242",
        address: dict[str, Any] | None = None,
        *,
        email: str | None = None,
    ) -> dict[str, Any]:
        """The person pays on the hosted Checkout page (typing `address` when it asks for one, and `email`
        when the session has no customer); returns the session."""
        with self.state.lock:
            session = self.state.get(session_id, "checkout.session", label="checkout.session")
            return self.state.render(complete_session(self.state, session, card, address, email=email))

    def pay_first_invoice(self, sub_id: str, card: str = "4242") -> bool:
        """Stripe.js confirms the Payment Element with a new card; True when the payment succeeded."""
        with self.state.lock:
            sub = self._sub(sub_id)
            pm = make_card(self.state, sub["customer"], card)
            if card == "0341":
                self.state.declining_payment_methods.add(pm["id"])
            self.state.emit("payment_method.attached", pm)
            return settle(self.state, sub, self.state.objects[sub["latest_invoice"]], pm["id"])

    def add_trial_card(self, sub_id: str, card: str = "4242") -> None:
        """Stripe.js confirms a trial's `pending_setup_intent` with a new card: nothing is charged now."""
        with self.state.lock:
            sub = self._sub(sub_id)
            pm = make_card(self.state, sub["customer"], card)
            if card == "0341":
                self.state.declining_payment_methods.add(pm["id"])
            self.state.emit("payment_method.attached", pm)
            confirm_setup_intent(self.state, sub, pm["id"])

    def require_action(self, sub_id: str) -> None:
        """The bank asks for 3-D Secure on the open invoice."""
        with self.state.lock:
            require_action(self.state, self.state.objects[self._sub(sub_id)["latest_invoice"]])

    def renew(self, sub_id: str) -> None:
        """Time reaches the period end: renew (or end, if set to cancel)."""
        with self.state.lock:
            renew(self.state, self._sub(sub_id))

    def fail_renewal(self, sub_id: str) -> None:
        """The card on file declines at renewal: the subscription goes past_due."""
        with self.state.lock:
            sub = self._sub(sub_id)
            pm = (
                sub["default_payment_method"]
                or self.state.objects[sub["customer"]]["invoice_settings"]["default_payment_method"]
            )
            if pm:
                self.state.declining_payment_methods.add(pm)
            renew(self.state, sub)

    def recover(self, sub_id: str, card: str = "4242") -> bool:
        """The person updates the card and Stripe's retry pays the open invoice."""
        with self.state.lock:
            sub = self._sub(sub_id)
            pm = make_card(self.state, sub["customer"], card)
            self.state.emit("payment_method.attached", pm)
            before = self.state.snapshot(sub)
            sub["default_payment_method"] = pm["id"]
            self.state.emit("customer.subscription.updated", sub, before)
            return settle(self.state, sub, self.state.objects[sub["latest_invoice"]], pm["id"])

    def exhaust_retries(self, sub_id: str, final: str = "canceled") -> None:
        """Every retry failed; the subscription settings end it as `canceled` or `unpaid`."""
        with self.state.lock:
            sub = self._sub(sub_id)
            if final == "canceled":
                end_subscription(self.state, sub, "payment_failed")
                return
            before = self.state.snapshot(sub)
            sub["status"] = "unpaid"
            self.state.emit("customer.subscription.updated", sub, before)

    def expire_incomplete(self, sub_id: str) -> None:
        """23 hours without a first payment: Stripe expires the subscription."""
        with self.state.lock:
            sub = self._sub(sub_id)
            before = self.state.snapshot(sub)
            sub["status"] = "incomplete_expired"
            sub["ended_at"] = self.state.now()
            self.state.emit("customer.subscription.updated", sub, before)

    def cancel_at_period_end(self, sub_id: str, cancel: bool = True) -> None:
        """The person cancels (or undoes it) in the Billing Portal."""
        with self.state.lock:
            sub = self._sub(sub_id)
            before = self.state.snapshot(sub)
            sub["cancel_at_period_end"] = cancel
            sub["cancel_at"] = item_of(sub)["current_period_end"] if cancel else None
            sub["canceled_at"] = self.state.now() if cancel else None
            sub["cancellation_details"]["reason"] = "cancellation_requested" if cancel else None
            self.state.emit("customer.subscription.updated", sub, before)

    def cancel_now(self, sub_id: str) -> None:
        with self.state.lock:
            sub = self._sub(sub_id)
            if sub["status"] in ("canceled", "incomplete_expired"):
                raise StandinError(400, "already canceled")
            end_subscription(self.state, sub)

    def delete_customer(self, customer_id: str) -> None:
        with self.state.lock:
            delete_customer(self.state, {}, customer_id)

    def refund(self, sub_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund the charge that paid the subscription's latest invoice."""
        with self.state.lock:
            charge = latest_charge(self.state, self._sub(sub_id)["latest_invoice"])
            if charge is None:
                raise StandinError(400, "no charge to refund")
            return self.state.render(refund_charge(self.state, charge, amount))

    def pause_collection(self, sub_id: str, behavior: str = "void") -> None:
        with self.state.lock:
            sub = self._sub(sub_id)
            before = self.state.snapshot(sub)
            sub["pause_collection"] = {"behavior": behavior, "resumes_at": None}
            self.state.emit("customer.subscription.updated", sub, before)

    def unpause_collection(self, sub_id: str) -> None:
        with self.state.lock:
            sub = self._sub(sub_id)
            before = self.state.snapshot(sub)
            sub["pause_collection"] = None
            self.state.emit("customer.subscription.updated", sub, before)

    def pause(self, sub_id: str) -> None:
        """Status `paused` (a trial ended with no payment method under `missing_payment_method=pause`)."""
        with self.state.lock:
            pause(self.state, self._sub(sub_id))

    def resume(self, sub_id: str) -> None:
        from .subscriptions import resume_subscription

        with self.state.lock:
            sub = self._sub(sub_id)
            if sub["default_payment_method"] is None:
                pm = make_card(self.state, sub["customer"])
                sub["default_payment_method"] = pm["id"]
            resume_subscription(self.state, {}, sub_id)

    def trial_will_end(self, sub_id: str) -> None:
        """Stripe's notice three days before a trial ends (the clock moves there if it is earlier)."""
        with self.state.lock:
            sub = self._sub(sub_id)
            notice_at = (sub["trial_end"] or 0) - TRIAL_WILL_END_NOTICE
            if self.state.now() < notice_at:
                self.state.advance(notice_at - self.state.now())
            self.state.emit("customer.subscription.trial_will_end", sub)

    def add_card_in_portal(self, customer_id: str, card: str = "4242") -> dict[str, Any]:
        """The person adds a card in the Billing Portal (`payment_method_update` flow): it becomes the
        customer's `invoice_settings.default_payment_method`, which a trial's end then charges."""
        with self.state.lock:
            customer = self.state.get(customer_id, "customer")
            pm = make_card(self.state, customer_id, card)
            if card == "0341":
                self.state.declining_payment_methods.add(pm["id"])
            self.state.emit("payment_method.attached", pm)
            before = self.state.snapshot(customer)
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
            self.state.emit("customer.updated", customer, before)
            return self.state.render(pm)

    def end_trial(self, sub_id: str) -> None:
        """Time reaches `trial_end`: charge the card, or without one do what `trial_settings` say
        (`missing_payment_method`: cancel, pause, or create_invoice, which leaves it past due)."""
        with self.state.lock:
            renew(self.state, self._sub(sub_id))

    def subscription(self, sub_id: str) -> dict[str, Any]:
        """The stand-in's truth for one subscription, as the API would return it."""
        with self.state.lock:
            return self.state.render(self._sub(sub_id))

    # --- one-time payments ---------------------------------------------------------------------------
    def confirm_payment_intent(self, intent_id: str, card: str = "4242") -> bool:
        """Stripe.js confirms a PaymentIntent with the Payment Element; True when the payment succeeded."""
        with self.state.lock:
            intent = self.state.get(intent_id, "payment_intent")
            pm = make_card(self.state, intent["customer"], card)
            if card == "0341":
                self.state.declining_payment_methods.add(pm["id"])
            return charge_intent(self.state, intent, pm["id"])

    def _charge_of(self, intent_or_charge: str) -> dict[str, Any]:
        obj = self.state.objects.get(intent_or_charge) or {}
        if obj.get("object") == "payment_intent":
            obj = self.state.objects.get(obj.get("latest_charge") or "") or {}
        if obj.get("object") != "charge":
            raise StandinError(400, f"no charge for {intent_or_charge}")
        return obj

    def refund_payment(self, intent_or_charge: str, amount: int | None = None) -> dict[str, Any]:
        """Refund (all that is left of, or `amount` of) a PaymentIntent's charge, as the dashboard does."""
        with self.state.lock:
            return self.state.render(refund_charge(self.state, self._charge_of(intent_or_charge), amount))

    def open_dispute(self, intent_or_charge: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputes the payment with their bank (`charge.dispute.created`)."""
        with self.state.lock:
            return self.state.render(open_dispute(self.state, self._charge_of(intent_or_charge), reason))

    def close_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """The bank decides the dispute, `won` or `lost` (`charge.dispute.closed`)."""
        with self.state.lock:
            return self.state.render(close_dispute(self.state, self.state.get(dispute_id, "dispute"), status))

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        with self.state.lock:
            return self.state.render(self.state.get(intent_id, "payment_intent"), ["latest_charge"])
