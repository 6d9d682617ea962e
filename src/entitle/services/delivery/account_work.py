"""The worker's share of account work: send queued mail, revoke Apple tokens of deleted accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from entitle.services.delivery.mail import deliver_due_mail
from entitle.services.identity.apple_tokens import revoke_due

if TYPE_CHECKING:
    from entitle.context import AppContext


async def deliver_account_work(context: AppContext) -> int:
    services = context.accounts
    done = await deliver_due_mail(context.database, services.mailer, context.settings)
    done += await revoke_due(context.database, services.apple_api, services.secret_box)
    return done
