"""The hosted Checkout page a Checkout Session's `url` opens, so a browser test can pay as a person does.

Stripe serves it at checkout.stripe.com; the stand-in serves a small plain page at `{base_url}/c/pay/{id}`
with the line item, the amount, the email when the session has no customer (Stripe asks for it then), a
card number (4242 4242 4242 4242 unless changed) and a Subscribe button (Pay, for a payment-mode
session). Paying completes the session exactly as `complete_session` does (the events Stripe would emit,
delivered to the registered webhook endpoints) and sends the browser to `success_url`, with
`{CHECKOUT_SESSION_ID}` filled in as Stripe fills it in; the back link goes to `cancel_url`. Card numbers
ending 0341 decline, and the person stays on the page with Stripe's message.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .checkout import complete_session
from .state import State
from .wire import StandinError

TEST_CARD = "4242 4242 4242 4242"
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def routes(state: State) -> list[Route]:
    async def pay(request: Request) -> Response:
        session_id = request.path_params["id"]
        if request.method == "GET":
            return _page(state, session_id)
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        card = form.get("card_number", "")
        digits = "".join(ch for ch in card if ch.isdigit())
        with state.lock:
            session = _open_session(state, session_id)
            if session is None:
                return _gone()
            try:
                complete_session(state, session, digits[-4:] or "4242", email=form.get("email"))
            except StandinError as exc:
                return _page(
                    state,
                    session_id,
                    card=card,
                    email=form.get("email", ""),
                    error=str(exc),
                    status=exc.status,
                )
            success = str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])
        # 303, so the browser follows with a GET, as after any form post.
        return RedirectResponse(success, status_code=303)

    async def invoice_page(request: Request) -> Response:
        invoice = _finalized_invoice(state, request.path_params["id"])
        if invoice is None:
            return HTMLResponse("<!doctype html><title>Invoice</title><p>No such invoice.</p>", 404)
        total = amount(invoice["total"], invoice["currency"])
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>Invoice {escape(str(invoice['number']))}</title></head><body>"
            f'<h1>Invoice {escape(str(invoice["number"]))}</h1><p id="total">{escape(total)}</p>'
            f'<p id="status">{escape(invoice["status"])}</p></body></html>'
        )

    async def invoice_pdf(request: Request) -> Response:
        invoice = _finalized_invoice(state, request.path_params["id"])
        if invoice is None:
            return Response(status_code=404)
        return Response(_pdf(f"Invoice {invoice['number']}"), media_type="application/pdf")

    return [
        Route("/c/pay/{id}", pay, methods=["GET", "POST"]),
        # Stripe's invoice.stripe.com hosted page and pay.stripe.com PDF, for links from entitle's pages.
        Route("/i/{id}", invoice_page),
        Route("/invoice/{id}/pdf", invoice_pdf),
    ]


def _finalized_invoice(state: State, invoice_id: str) -> dict[str, Any] | None:
    invoice = state.objects.get(invoice_id)
    if invoice is None or invoice.get("object") != "invoice" or invoice["status"] == "draft":
        return None
    return invoice


def _pdf(text: str) -> bytes:
    """A one-page PDF saying `text` (enough for a browser to open it as one)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _open_session(state: State, session_id: str) -> dict[str, Any] | None:
    session = state.objects.get(session_id)
    if session is None or session.get("object") != "checkout.session" or session["status"] != "open":
        return None
    return session


def amount(unit_amount: int, currency: str) -> str:
    """$9.99, €9.99, or 9.99 CHF: what the page shows for an amount in minor units."""
    value = f"{unit_amount / 100:,.2f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def _page(
    state: State,
    session_id: str,
    *,
    card: str = TEST_CARD,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    with state.lock:
        session = _open_session(state, session_id)
        if session is None:
            return _gone()
        item = session["_hidden"]["line_items"]["data"][0]
        price = state.objects[item["price"]]
        product = state.objects.get(price["product"], {})
        name = product.get("name") or item["description"]
        one_time = session["mode"] == "payment"
        if one_time:
            quantity = item["quantity"]
            price_text = amount(price["unit_amount"] * quantity, price["currency"])
            if quantity > 1:
                price_text = f"{quantity} × {amount(price['unit_amount'], price['currency'])} = {price_text}"
        else:
            interval = price["recurring"]["interval"]
            price_text = f"{amount(price['unit_amount'], price['currency'])} per {interval}"
        trial = session["_subscription_data"].get("trial_period_days")
        known = session["customer_email"] or (
            state.objects[session["customer"]].get("email") if session["customer"] else None
        )
        cancel_url = session["cancel_url"]
        off = (session.get("total_details") or {}).get("amount_discount") or 0
        codes = [
            state.objects[d["promotion_code"]]["code"]
            for d in session["discounts"]
            if d.get("promotion_code")
        ]
    today = amount(0 if trial else session["amount_total"], price["currency"])
    verb = "Pay for" if one_time else "Subscribe to"
    due = f"{trial} days free, then {price_text}. Due today: {today}" if trial else f"Due today: {today}"
    if off:
        due += f" ({' '.join(codes) or 'discount'}: -{amount(off, price['currency'])})"
    back = f'<a class="back" href="{escape(cancel_url)}">&larr; Back</a>' if cancel_url else ""
    # Without a customer or a prefilled address, Stripe's page asks for the email first.
    email_row = (
        f'<p class="email">Paying as <strong>{escape(known)}</strong></p>'
        if known
        else '<label for="email">Email</label>\n    <input id="email" name="email" type="email" '
        f'autocomplete="email" required value="{escape(email)}">\n    '
    )
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{verb} {escape(name)}</title>
<style>
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; font: 16px/1.5 system-ui, sans-serif; color: #1a1f36; background: #f6f9fc; }}
  main {{ max-width: 28rem; margin: 0 auto; padding: 1.5rem 1rem; }}
  .back {{ color: #635bff; text-decoration: none; }}
  h1 {{ font-size: 1.1rem; font-weight: 500; margin: 1.5rem 0 0; color: #697386; }}
  .price {{ font-size: 2rem; font-weight: 600; margin: 0.25rem 0 0; }}
  .due {{ color: #697386; margin: 0 0 1.5rem; }}
  label {{ display: block; font-size: 0.9rem; margin-bottom: 0.25rem; }}
  input + label {{ margin-top: 1rem; }}
  input {{ width: 100%; font: inherit; padding: 0.6rem 0.75rem; border: 1px solid #cfd7df;
           border-radius: 6px; background: #fff; }}
  button {{ width: 100%; margin-top: 1.25rem; padding: 0.8rem; font: inherit; font-weight: 600;
            color: #fff; background: #635bff; border: 0; border-radius: 6px; cursor: pointer; }}
  .error {{ color: #df1b41; }}
  .note {{ font-size: 0.8rem; color: #697386; text-align: center; }}
</style>
</head>
<body>
<main>
  {back}
  <h1>{verb} {escape(name)}</h1>
  <p class="price" data-testid="amount">{escape(price_text)}</p>
  <p class="due">{escape(due)}</p>
  <form method="post">
    {email_row}
    <label for="card_number">Card number</label>
    <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number"
           value="{escape(card)}">
    {alert}
    <button type="submit">{"Pay" if one_time else "Subscribe"}</button>
  </form>
  <p class="note">Stripe stand-in: test mode, no card is charged.</p>
</main>
</body>
</html>
"""
    return HTMLResponse(body, status)


def _gone() -> Response:
    # What Stripe shows for a session that was paid, expired or never existed.
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Checkout</title></head><body><p>This Checkout Session is no longer active.</p></body></html>",
        404,
    )
