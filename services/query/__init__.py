"""The query service: the read models of the projections over HTTP."""
