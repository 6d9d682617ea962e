"""entitle: one account and one subscription for a web app and an iPhone app."""

__version__ = "0.1.0"
