"""Processes and adapters: the log, the projector, the HTTP services, the CLI."""
