"""Settings saved from /admin/setup, overlaid on the environment, and applied in every process at once.

The effective settings are the environment's (whatever `Settings()` was given) with saved values filling
the names the environment left unset: an environment value always wins, so a deployment that pins a key
cannot be changed from a page. Saved secrets are encrypted under the encryption key
(services.identity.encryption) and never leave this module but inside a `SecretStr`.

A save is written in the caller's transaction and announced on the change bus; after the commit every
process re-reads the saved rows and rebuilds what depends on them (AppContext.apply_settings).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.setup import SavedSetting
from entitle.db.types import utcnow
from entitle.errors import Conflict, InvalidRequest
from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.services.delivery.changes import change_bus
from entitle.services.identity.encryption import SecretBox
from entitle.settings import Settings

if TYPE_CHECKING:
    from entitle.context import AppContext

log = logging.getLogger(__name__)

# The names /admin/setup may save: the keys and ids of each integration. Everything about where and how
# the server runs (database, public URL, signing keys, the encryption key itself) stays in the environment.
RUNTIME_SETTINGS: tuple[str, ...] = (
    "stripe_secret_key",
    "stripe_publishable_key",
    "stripe_webhook_secret",
    "apple_bundle_id",
    "apple_app_id",
    "apple_issuer_id",
    "apple_key_id",
    "apple_private_key",
    "apple_signin_client_ids",
    "apple_signin_web_client_id",
    "apple_signin_team_id",
    "apple_signin_key_id",
    "apple_signin_private_key",
    "google_client_ids",
    "google_web_client_id",
    "smtp_url",
    "email_from",
    "alert_webhook_url",
    "team_channel_url",
    "team_channel_events",
    "backups_configured",
)
# Stored encrypted, shown as "saved" and never echoed: the fields Settings keeps as SecretStr.
SECRET_SETTINGS: frozenset[str] = frozenset(
    name for name in RUNTIME_SETTINGS if "SecretStr" in str(Settings.model_fields[name].annotation)
)
# Keys pasted whole (a .p8 file's PEM): their line ends are kept, every other value is one line. A key
# file's path stays an environment setting: a page should not make the server read its own files.
MULTILINE_SETTINGS: frozenset[str] = frozenset({"apple_private_key", "apple_signin_private_key"})
# The longest value a page may save (a PEM path, a list of client ids, an SMTP URL all fit).
MAX_VALUE_LENGTH = 4000

Source = Literal["environment", "saved", "unset"]


def label_of(name: str) -> str:
    """The setting's name as a person reads it (no environment-variable spelling on pages)."""
    return name.replace("_", " ")


def source_of(context: AppContext, name: str) -> Source:
    environment = context.environment_settings or context.settings
    if name in environment.model_fields_set:
        return "environment"
    if name in context.saved_settings:
        return "saved"
    return "unset"


def effective_settings(environment: Settings, saved: dict[str, str]) -> Settings:
    """The environment overlaid with saved values; raises ValidationError when a saved value is invalid."""
    given = {name: getattr(environment, name) for name in environment.model_fields_set}
    overlay = {
        name: value
        for name, value in saved.items()
        if name in RUNTIME_SETTINGS and name not in environment.model_fields_set
    }
    return Settings.model_validate({**overlay, **given})


async def read_saved(db: AsyncSession, box: SecretBox) -> dict[str, str]:
    """The saved settings by name, secrets decrypted; a secret that no longer decrypts (the encryption
    key changed) is left out, and said so without its value."""
    saved: dict[str, str] = {}
    for row in (await db.scalars(select(SavedSetting))).all():
        if row.name not in RUNTIME_SETTINGS:
            continue
        if row.name in SECRET_SETTINGS:
            plain = box.decrypt(row.value)
            if plain is None:
                log.warning("saved setting %s cannot be decrypted with the current encryption key", row.name)
                continue
            saved[row.name] = plain
        else:
            saved[row.name] = row.value
    return saved


def _field_of(error_loc: tuple[object, ...]) -> str | None:
    return str(error_loc[0]) if error_loc and str(error_loc[0]) in RUNTIME_SETTINGS else None


def _refusal(exc: ValidationError, names: set[str]) -> InvalidRequest:
    for error in exc.errors():
        name = _field_of(tuple(error["loc"]))
        if name is not None:
            message = str(error["msg"]).removeprefix("Value error, ")
            return InvalidRequest(
                f"{label_of(name).capitalize()}: {message}.", code="invalid_setting", details={"field": name}
            )
    name = sorted(names)[0] if names else "settings"
    return InvalidRequest(
        "Those settings cannot be used together.", code="invalid_setting", details={"field": name}
    )


def _field_in_message(message: str, names: set[str]) -> str:
    """The setting a builder's ValueError names (it spells it as an environment variable)."""
    for match in re.findall(r"ENTITLE_([A-Z0-9_]+)", message):
        if str(match).lower() in RUNTIME_SETTINGS:
            return str(match).lower()
    return sorted(names)[0] if names else "settings"


async def save_settings(
    db: AsyncSession, context: AppContext, values: dict[str, str | None], *, by: str
) -> None:
    """Save `values` (None or blank removes a saved value) in the transaction of `db`; every process
    applies them once it commits. 422 `invalid_setting` names the field; 409 `set_in_environment`."""
    environment = context.environment_settings or context.settings
    for name in values:
        if name not in RUNTIME_SETTINGS:
            raise InvalidRequest(
                f"{label_of(name).capitalize()} cannot be saved here.",
                code="invalid_setting",
                details={"field": name},
            )
        if name in environment.model_fields_set:
            raise Conflict(
                f"{label_of(name).capitalize()} is set in the environment, which wins over a saved value; "
                "change it there.",
                code="set_in_environment",
            )
    box = context.accounts.secret_box
    saved = await read_saved(db, box)
    changed: dict[str, str | None] = {}
    for name, value in values.items():
        value = value.strip() if value is not None else None
        if value and name in MULTILINE_SETTINGS:
            # A textarea posts CRLF; PEM wants one LF per line, and no blank lines in between.
            value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        if value and len(value) > MAX_VALUE_LENGTH:
            raise InvalidRequest(
                f"{label_of(name).capitalize()} is longer than {MAX_VALUE_LENGTH} characters.",
                code="invalid_setting",
                details={"field": name},
            )
        allowed = "\n" if name in MULTILINE_SETTINGS else ""
        if value and any((ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed for char in value):
            # A key with a control character in it was pasted wrong; it would break headers and URLs later.
            raise InvalidRequest(
                f"{label_of(name).capitalize()} contains a control character; paste it again.",
                code="invalid_setting",
                details={"field": name},
            )
        changed[name] = value or None
        if value:
            saved[name] = value
        else:
            saved.pop(name, None)
    try:
        settings = effective_settings(environment, saved)
    except ValidationError as exc:
        raise _refusal(exc, set(changed)) from None
    try:
        # Built once and thrown away: a key file that cannot be read is refused now, not at every reload.
        _try_build(context, settings)
    except (ValueError, OSError, AppStoreMisconfigured) as exc:
        name = _field_in_message(str(exc), set(changed))
        raise InvalidRequest(
            f"{label_of(name).capitalize()} cannot be used: {_without_setting_names(str(exc))}",
            code="invalid_setting",
            details={"field": name},
        ) from None
    now = utcnow()
    for name, value in changed.items():
        row = await db.get(SavedSetting, name)
        if value is None:
            if row is not None:
                await db.delete(row)
            continue
        stored = box.encrypt(value) if name in SECRET_SETTINGS else value
        if row is None:
            db.add(SavedSetting(name=name, value=stored, updated_at=now, updated_by=by))
        else:
            row.value, row.updated_at, row.updated_by = stored, now, by
    # Names only: a value, secret or not, never reaches a log line.
    log.info("settings saved by %s: %s", by, ", ".join(sorted(changed)))
    bus = change_bus(db)
    if bus is not None:
        await bus.settings_changed(db)


def _without_setting_names(message: str) -> str:
    return re.sub(r"ENTITLE_[A-Z0-9_]+:?\s*", "", message).strip() or "it could not be read."


def _try_build(context: AppContext, settings: Settings) -> None:
    from entitle.context import build_providers
    from entitle.identity.build import build_identity_verifiers
    from entitle.services.identity.account_setup import build_account_services

    verifiers = build_identity_verifiers(settings, context.http)
    build_providers(
        settings,
        database=context.database,
        catalog=context.catalog,
        http=context.http,
        apple_identity=verifiers["apple"],
        deletion_hooks=[],
    )
    build_account_services(settings, context.http)


async def reload_settings(context: AppContext) -> bool:
    """Re-read the saved settings and apply them when they changed; True when something was applied.
    A saved value that no longer validates is left out (and logged by name), the rest still applies."""
    async with context.settings_lock:
        async with context.database.read_sessionmaker() as db:
            saved = await read_saved(db, context.accounts.secret_box)
        if saved == context.saved_settings:
            return False
        environment = context.environment_settings or context.settings
        usable = dict(saved)
        while True:
            try:
                settings = effective_settings(environment, usable)
                break
            except ValidationError as exc:
                bad = {_field_of(tuple(error["loc"])) for error in exc.errors()} - {None}
                if not bad & set(usable):
                    bad = set(usable)
                for name in bad & set(usable):
                    log.warning("saved setting %s is not valid and was left out", name)
                    usable.pop(str(name))
        try:
            context.apply_settings(settings)
        except (ValueError, OSError, AppStoreMisconfigured) as exc:
            log.warning("saved settings could not be applied: %s", _without_setting_names(str(exc)))
            return False
        context.saved_settings = saved
        log.info("settings applied: %s", ", ".join(sorted(saved)) or "none saved")
        return True


def follow_settings(context: AppContext) -> None:
    """Re-read saved settings whenever the change bus says they changed, here or in another process."""
    pending: set[asyncio.Task[bool]] = set()

    def changed() -> None:
        task = asyncio.get_running_loop().create_task(_reload_quietly(context))
        pending.add(task)
        task.add_done_callback(pending.discard)

    context.bus.on_settings_changed = changed


async def _reload_quietly(context: AppContext) -> bool:
    try:
        return await reload_settings(context)
    except Exception as exc:  # the next change or restart tries again; the old settings keep serving
        log.warning("could not reload saved settings: %s", exc.__class__.__name__)
        return False


def secret_value(value: SecretStr | list[SecretStr] | None) -> bool:
    """Whether a secret setting has a value (for cards, which never show it)."""
    if isinstance(value, list):
        return bool(value)
    return value is not None
