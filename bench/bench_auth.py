"""Sign-in and `GET /v1/me` throughput, as ratios to a bare Starlette JSON endpoint in the same run.

    .venv/bin/python bench/bench_auth.py [--seconds 5] [--database sqlite|postgresql|both]

Sign-in is deliberately expensive (argon2id, 64 MiB, t=3): its ratio shows what that costs, not a
problem to fix. `GET /v1/me` verifies the ES256 token and reads the account with its session in one
indexed query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    entitle_env,
    http_request,
    prepare_database,
    print_table,
    run_load,
    uvicorn_server,
)

PASSWORD = "correct horse battery staple"


async def bench_database(database: str, seconds: float, bare_rps: float) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = entitle_env(database, Path(tmp))
        await prepare_database(database, env)
        os.environ.update(env)
        with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
            host = url.removeprefix("http://")
            async with httpx.AsyncClient(base_url=url) as http:
                session = (
                    await http.post(
                        "/v1/auth/register", json={"email": "b@example.com", "password": PASSWORD}
                    )
                ).json()
            login_body = json.dumps({"email": "b@example.com", "password": PASSWORD}).encode()
            login = await run_load(
                url,
                lambda _: http_request(
                    "POST",
                    "/v1/auth/login",
                    host,
                    body=login_body,
                    headers={"Content-Type": "application/json"},
                ),
                concurrency=4,
                seconds=seconds,
            )
            me_request = http_request(
                "GET", "/v1/me", host, headers={"Authorization": f"Bearer {session['access_token']}"}
            )
            me = await run_load(url, lambda _: me_request, concurrency=32, seconds=seconds)
    rows = []
    for name, result in (("POST /v1/auth/login", login), ("GET /v1/me", me)):
        rows.append(
            (
                database,
                name,
                f"{result.throughput:,.0f}",
                f"{result.throughput / bare_rps:.1%}",
                f"{result.median_ms:.1f}",
                f"{result.percentile(99):.1f}",
                str(result.errors),
            )
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    with uvicorn_server("bench.bare_app:app") as url:
        host = url.removeprefix("http://")
        request = http_request("GET", "/json", host)
        bare = await run_load(url, lambda _: request, concurrency=32, seconds=args.seconds)
    rows = [
        (
            "-",
            "bare Starlette JSON",
            f"{bare.throughput:,.0f}",
            "100.0%",
            f"{bare.median_ms:.1f}",
            f"{bare.percentile(99):.1f}",
            str(bare.errors),
        )
    ]
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    for database in databases:
        rows += await bench_database(database, args.seconds, bare.throughput)
    print_table(
        "sign-in and GET /v1/me (one uvicorn worker; ratio = throughput / bare Starlette)",
        rows,
        ("database", "endpoint", "req/s", "ratio", "p50 ms", "p99 ms", "errors"),
    )


if __name__ == "__main__":
    asyncio.run(main())
