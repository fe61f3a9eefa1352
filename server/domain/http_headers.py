"""The headers every answer carries, declared once: pages (the server's and the service worker's offline ones,
which get PAGE_HEADERS as data from /pwa/shell.json), the service worker's own script, and stored photos.

Why each: a strict Content-Security-Policy so that markup slipped into a page cannot run a script or send a form
elsewhere (scripts, styles, images only from the app's own files; no inline code, nothing embedded, no <base>);
no framing (clickjacking); `nosniff` so a browser never guesses a type the server did not say. Pure data: the
web app's middleware (server/web/security_headers.py) sets them, the sync gateway's answers pass through it.
"""

from __future__ import annotations

from server.domain.field_rules import sniffed_type

_PAGE_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


PAGE_CSP = _policy(_PAGE_POLICY)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# The service worker compiles the server's templates with Nunjucks, which builds functions from their source:
# its script (and only its script: a worker has no document to inject into) may evaluate code.
WORKER_CSP = _policy({**_PAGE_POLICY, "script-src": "'self' 'unsafe-eval'"})
# A stored photo opened on its own: an inert document that can run nothing and load nothing.
ATTACHMENT_HEADERS = {"Content-Security-Policy": "sandbox; default-src 'none'", "X-Content-Type-Options": "nosniff"}


def attachment_answer(data: bytes) -> tuple[str, dict[str, str]]:
    """How to serve a stored attachment: the type its bytes show (never the type it was stored with) and its
    headers; anything that is not a photo (stored before the rule, or written past it) only as a download."""
    kind = sniffed_type(data)
    headers = {**ATTACHMENT_HEADERS, "Cache-Control": "private, max-age=3600"}
    if kind is None:
        return "application/octet-stream", {**headers, "Content-Disposition": "attachment"}
    return kind, headers
