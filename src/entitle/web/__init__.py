"""The HTTP layer: thin routes over services."""
