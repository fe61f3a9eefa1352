"""QR codes drawn by the server as SVG: a venue's code of the day (pool_pages.py). The one encoder call is
server/services/qr_drawing.py's, which also draws a voucher's once, kept with it so that its holder's phone shows it
offline (rewards.html draws that one with the same markup)."""

from __future__ import annotations

from markupsafe import Markup

from server.services import qr_drawing


def qr_svg(text: str) -> Markup:
    """`text` as a QR code: an SVG of one path, drawn by the server (no script, no inline style, no id: the strict
    CSP holds, and a sheet of several repeats no id)."""
    drawn = qr_drawing.draw(text)
    size, path = drawn["qr_size"], drawn["qr_path"]  # numbers and M/h/v/z only: nothing to escape
    return Markup(f'<svg width="{size}mm" height="{size}mm" version="1.1" viewBox="0 0 {size} {size}" '
                  f'xmlns="http://www.w3.org/2000/svg"><path d="{path}" fill="#000000"/></svg>')
