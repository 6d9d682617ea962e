"""The vendor-free core: catalog, subscriptions, entitlements, events and the data model."""
