"""The cards /admin/setup shows and `entitle doctor` prints, in order: one source for both, so the
terminal and the page never disagree about an integration's state.

Where an integration has a check (services/setup/*_setup.py), its card shows the check's answer; the rest
are decided by the settings alone (services/setup/settings_cards.py).
"""

from __future__ import annotations

from entitle.services.setup import appstore_setup, mail_setup, signin_setup
from entitle.services.setup.settings_cards import CARDS, CardSource

PAGE_CARDS: dict[str, CardSource] = {
    **CARDS,
    "app_store": appstore_setup.card,
    "apple_signin": signin_setup.apple_card,
    "google_signin": signin_setup.google_card,
    "mail": mail_setup.card,
}
