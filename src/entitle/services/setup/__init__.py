"""Set-up from the browser: runtime settings, and one check per integration that proves it works."""
