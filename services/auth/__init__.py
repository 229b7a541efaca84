"""Users, tokens and per-project permissions, enforced on every route when auth is on."""
