"""The web console: static files shipped in the package (cj_api/console/), served by
the REST app at `/` when `api.console` is on.

No build step, no CDN, no framework: one HTML page, one stylesheet, one script, which
call the REST API with the reader token the user types (kept in sessionStorage).
Every answer carries a strict Content-Security-Policy (only our own files; no inline
script or style; never framed) and `X-Content-Type-Options: nosniff`; the files are
revalidated with their ETag (`Cache-Control: no-cache`), so a new release is picked up
at once and an unchanged one costs a 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from quart import Response, request
from quart_trio import QuartTrio

from cj_api.rest_primitives import etag_matches

__all__ = ["CONSOLE_FILES", "CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "register_console"]

# URL path → (file in cj_api/console/, media type)
CONSOLE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/lock.svg": ("lock.svg", "image/svg+xml"),
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        # The player plays the recording fetched with the token, as a blob: URL.
        "media-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, _File]:
    folder = resources.files("cj_api") / "console"
    files = {}
    for path, (name, media_type) in CONSOLE_FILES.items():
        body = (folder / name).read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        files[path] = _File(body, media_type, etag)
    return files


def register_console(app: QuartTrio) -> None:
    """Add the console's routes to `app` (files read once, here)."""
    files = _load()

    async def serve_file() -> Response:
        file = files[request.path]
        headers = {**SECURITY_HEADERS, "ETag": file.etag, "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("If-None-Match"), file.etag):
            return Response(b"", 304, headers)
        response = Response(file.body, 200, headers, content_type=file.media_type)
        return response

    for index, path in enumerate(files):
        app.add_url_rule(path, f"console{index}", serve_file, methods=["GET", "HEAD"])
