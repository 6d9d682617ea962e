"""Telling the world: the provider inbox, the pipeline, streams, outbound webhooks, mail, alerts."""
