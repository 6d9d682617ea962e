"""Every router, in one list the app factory includes."""

from __future__ import annotations

from fastapi import APIRouter

from entitle.web.routes import auth, health, me
from entitle.web.routes import identity as identity_routes


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        auth.router,
        me.router,
        # Registered by their packages (one line each):
        identity_routes.router,
    ]
