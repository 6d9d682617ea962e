"""Identities of the test app every App Store test signs for."""

BUNDLE_ID = "com.example.app"
APP_APPLE_ID = 1234
# Product ids of the packaged sample catalog.
MONTHLY = "com.example.app.pro.monthly"
YEARLY = "com.example.app.pro.yearly"
