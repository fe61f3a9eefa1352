"""A QR code as data a template draws (issue 16): a voucher's code is drawn once, by the server, and kept with the
voucher, so that its holder's phone shows the same QR code offline (rewards.html, rendered by the server and by the
offline app alike) without a QR encoder in JavaScript."""

from __future__ import annotations

import qrcode


def draw(text: str) -> dict[str, int | str]:
    """`text` as a QR code: `qr_size`, its side in modules (the quiet zone of 4 included), and `qr_path`, an SVG path
    of its dark modules, one rectangle per run of them in a row."""
    code = qrcode.QRCode(border=4)
    code.add_data(text)
    code.make(fit=True)
    rows = code.get_matrix()
    runs = []
    for y, row in enumerate(rows):
        x = 0
        while x < len(row):
            start = x
            while x < len(row) and row[x]:
                x += 1
            if x > start:
                runs.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
            x += 1
    return {"qr_size": len(rows), "qr_path": "".join(runs)}
