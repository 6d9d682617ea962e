"""Looking back: reports, support lookups and the account dossier."""
