"""The ``Host:`` check of a server without authentication (DNS rebinding).

A web page can make a browser resolve its own name to 127.0.0.1 and then talk to a
loopback server as if it were the page's origin; the one trace of that left in the
request is the ``Host:`` header, which still names the attacker's domain. A server that
trusts every caller therefore answers only requests whose Host names a loopback address
or ``localhost`` (any port; ``[::1]`` too), plus the host it was told to bind when remote
access without auth was allowed explicitly, plus what ``allowed_hosts`` lists (Django's
ALLOWED_HOSTS, Vite's server.allowedHosts). Anything else is 403 PERMISSION_DENIED in
the one error shape. A request without Host (HTTP/1.0) cannot come from a browser and is
let through, and so is ``/healthz`` (liveness probes use whatever name they like).

Bound to a wildcard address (0.0.0.0, ::) with remote access allowed, the server is
reached by any of the machine's addresses, so any IP literal is accepted: rebinding
needs a domain name, never an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from deardiary.schemas.errors import PermissionDenied

OPEN_PATHS = frozenset({"/healthz"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(header: str) -> str | None:
    """The name in a Host header without its port, lower case, brackets and trailing dot
    removed; None when the header is not a host[:port] at all."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, sep, rest = value.partition(":")
        rest = sep + rest
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    name = name.rstrip(".") if name != "." else name
    return name or None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class HostPolicy:
    """Which Host names a no-auth server answers (see the module's docstring)."""

    def __init__(self, bind_host: str | None = None, allowed_hosts: Iterable[str] = ()) -> None:
        self.any_host = False
        self.any_ip = False
        self.names: set[str] = {"localhost"}
        for entry in [*(h.strip() for h in allowed_hosts), bind_host]:
            if entry is None:
                continue
            if entry == "*":
                self.any_host = True
            elif entry in WILDCARDS:
                self.any_ip = True
            else:
                name = host_name(entry) or host_name(f"[{entry}]")
                if name is not None:
                    ip = _ip(name)
                    self.names.add(str(ip) if ip is not None else name)

    def allows(self, header: str | None) -> bool:
        if header is None or self.any_host:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        ip = _ip(name)
        if ip is None:
            return False
        return ip.is_loopback or self.any_ip or str(ip) in self.names


def host_check(bind_host: str | None = None, allowed_hosts: Iterable[str] = ()) -> Middleware:
    """A middleware answering 403 PERMISSION_DENIED to a Host the policy does not allow.
    Mount it inside the error middleware (`build_app(middlewares=[...])`)."""
    policy = HostPolicy(bind_host, allowed_hosts)

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            header = request.headers.get("Host")
            if not policy.allows(header):
                raise PermissionDenied(
                    f"Host {header!r} is not served: without authentication this server "
                    "answers loopback names only (a guard against DNS rebinding)",
                    {"host": header},
                )
        return await handler(request)

    return check_host
