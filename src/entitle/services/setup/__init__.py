"""Setting entitle up from the browser: runtime settings, integration cards, the production checklist."""
