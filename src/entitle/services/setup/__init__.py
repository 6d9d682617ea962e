"""Setting the server up from the dashboard: saved settings, the first run, and one card per integration."""
