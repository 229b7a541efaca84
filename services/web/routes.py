"""Serving the built web page: ``/``, its URLs (the page routes in the browser), ``/assets/``.

The page is a static bundle built from ``web/`` into ``static/`` (committed, so a ``pip
install`` needs no Node). Everything is served from here, nothing from a CDN:

* ``index.html`` for ``/`` and every URL the page itself routes (a shared link opens the
  view it names), never cached (``no-cache``: revalidated, so a new build shows at once);
* ``/assets/<hashed name>`` with a year of ``immutable`` caching: a file's name changes
  whenever its bytes do;
* a Content-Security-Policy without inline scripts or styles, no framing, and only this
  origin to connect to.

The page's routes are public (the sign-in page must load without a token); the data it
asks for goes through the API and its permissions like any other client's.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
ASSETS = STATIC / "assets"

# The first path segment of every URL the page routes itself (web/src/route.ts).
PAGE_PREFIXES = ("projects", "p", "e", "r", "models", "history", "login", "compare")
PAGE_ROUTES = frozenset(
    {
        ("GET", "/"),
        ("HEAD", "/"),
        ("GET", "/favicon.svg"),
        ("HEAD", "/favicon.svg"),
        ("GET", "/assets/{name}"),
        ("HEAD", "/assets/{name}"),
        ("GET", "/{page}"),  # aiohttp's canonical form of the page pattern below
        ("HEAD", "/{page}"),
    }
)

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class WebPage:
    """The bundle in `static` (a folder holding index.html and assets/)."""

    def __init__(self, static: Path = STATIC) -> None:
        self.static = static

    def _index(self) -> bytes:
        index = self.static / "index.html"
        if not index.is_file():
            raise web.HTTPNotFound(
                text="the web page is not built: run `make` (npm ci + vite build in web/)",
                headers=SECURITY_HEADERS,
            )
        return index.read_bytes()

    async def page(self, request: web.Request) -> web.Response:
        """index.html: the page routes the URL itself once loaded."""
        return web.Response(
            body=self._index(),
            content_type="text/html",
            charset="utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return self._file(self.static / "favicon.svg", "no-cache")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _ASSET_NAME.match(name) or ".." in name:
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        return self._file(self.static / "assets" / name, IMMUTABLE)

    def _file(self, path: Path, cache: str) -> web.StreamResponse:
        if not path.is_file():
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".js":
            kind = "text/javascript"
        return web.FileResponse(
            path, headers={**SECURITY_HEADERS, "Cache-Control": cache, "Content-Type": kind}
        )


def mount_web(app: web.Application, page: WebPage | None = None) -> web.Application:
    """Add the page's routes to `app` (after `build_app`: they are not part of the API,
    so not in /openapi.json; the auth middleware lets `PAGE_ROUTES` through)."""
    page = page or WebPage()
    app.router.add_get("/", page.page)
    app.router.add_get("/favicon.svg", page.favicon)
    app.router.add_get("/assets/{name}", page.asset)
    app.router.add_get(f"/{{page:(?:{'|'.join(PAGE_PREFIXES)})(?:/.*)?}}", page.page)
    return app
