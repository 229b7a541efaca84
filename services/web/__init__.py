"""The web page for people, served by the server itself (see `routes.mount_web`)."""
