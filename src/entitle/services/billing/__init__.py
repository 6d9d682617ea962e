"""Selling on the web: Checkout, the Payment Element, plan changes and the portal."""
