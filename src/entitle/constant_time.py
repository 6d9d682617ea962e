"""Comparing secrets (MACs, keys, tokens, digests) in constant time.

`hmac.compare_digest` refuses a str holding anything but ASCII with a TypeError, and what it is handed
often comes from a client (a form field, a header, a cookie, a query), so every comparison goes through
here: both sides as UTF-8 bytes, where any text compares and a non-ASCII value is simply not equal.
"""

from __future__ import annotations

import hmac


def same_secret(presented: str | bytes, expected: str | bytes) -> bool:
    """True when both are the same, in time that does not depend on where they differ."""
    left = presented.encode() if isinstance(presented, str) else presented
    right = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(left, right)
