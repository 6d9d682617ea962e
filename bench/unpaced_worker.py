"""`entitle worker` with its Stripe pacer lifted: one worker's own cost per event, when entitle and not
Stripe's 25 reads/s per endpoint sets the pace. Only against a stand-in that enforces no limit.

    python -m bench.unpaced_worker      (settings from the environment, as `entitle worker`)
"""

from __future__ import annotations

import asyncio

from entitle.app import run_background_work
from entitle.cli.common import load_context, load_settings
from entitle.pacing import Pacer


async def main() -> None:
    context = load_context(load_settings())
    # The one difference from `entitle worker`: ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND lifts the account
    # limit but each endpoint stays at Stripe's 25/s, which alone caps a worker at about 24 renewals/s.
    context.providers["stripe"].gateway.pacer = Pacer(per_second=None, per_endpoint=None)  # type: ignore[attr-defined]
    try:
        await run_background_work(context)
    finally:
        await context.aclose()


if __name__ == "__main__":
    asyncio.run(main())
