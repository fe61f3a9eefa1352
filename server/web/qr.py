"""QR codes drawn by the server as SVG (`qrcode`, no imaging library): a venue's code of the day (pool_pages.py).
A voucher's is drawn once when it is made and kept with it, so that its holder's phone shows it offline
(server/services/qr_drawing.py)."""

from __future__ import annotations

import qrcode
from markupsafe import Markup
from qrcode.image.svg import SvgPathImage


def qr_svg(text: str) -> Markup:
    """`text` as a QR code, an SVG path drawn by the server (no script, no inline style: the strict CSP holds)."""
    svg = qrcode.make(text, image_factory=SvgPathImage).to_string(encoding="unicode")
    return Markup(svg.replace(' id="qr-path"', ""))  # its one fixed id would repeat on a sheet of several
