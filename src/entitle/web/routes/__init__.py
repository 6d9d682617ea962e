"""Every router, in one list the app factory includes."""

from __future__ import annotations

from fastapi import APIRouter

from entitle.web.routes import auth, health, me


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        auth.router,
        me.router,
        # Registered by their packages (one line each):
    ]
