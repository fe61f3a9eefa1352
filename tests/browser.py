"""Headless Chromium for tests and benchmarks: Debian's binary, flags this machine needs,
and the project folder served on loopback (WebCrypto needs a secure context; localhost is one)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import qrcode
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, Playwright, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from server.domain.declaration import Role
from server.security import accounts, grants
from server.security.firewall import Firewall
from server.services import demo
from server.store.config import PROJECT_ROOT
from server.store.couch import Couch, build_views, connect
from server.store.embedded_couch import free_port
from tests.street import hashed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def launch(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def launch_with_camera(browser_type: BrowserType, video: Path) -> Browser:
    """Chromium whose one camera films `video` (a Y4M file, looped: `y4m_of_qr`), granted to every page without
    asking, as a person who allowed it once."""
    return browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}",
        "--use-fake-ui-for-media-stream"])


def y4m_of_qr(text: str, path: Path) -> None:
    """`text` as a QR code filmed: y4m_of_modules."""
    code = qrcode.QRCode(border=4)
    code.add_data(text)
    code.make(fit=True)
    y4m_of_modules(code.get_matrix(), path)


def modules_of_svg(size: int, d: str) -> list[list[bool]]:
    """The modules a voucher's QR code shows (rewards.html: the SVG path server/services/qr_drawing.py draws, a
    rectangle `M{x},{y}h{n}v1h-{n}z` per run of dark modules in a row), to film what the page shows."""
    modules = [[False] * size for _ in range(size)]
    for x, y, n in re.findall(r"M(\d+),(\d+)h(\d+)v1h-\3z", d):
        modules[int(y)][int(x):int(x) + int(n)] = [True] * int(n)
    return modules


def y4m_of_modules(modules: list[list[bool]], path: Path, width: int = 640, height: int = 480) -> None:
    """A one-frame Y4M video (a header, then the frame's luma plane and two neutral chroma planes, 4:2:0) of a QR
    code's modules, black on white in the middle of the frame: what a camera sees of a screen showing it."""
    scale = min(width, height) // len(modules)
    left, top = (width - len(modules) * scale) // 2, (height - len(modules) * scale) // 2
    luma = bytearray([235]) * (width * height)  # video white; 16 is video black
    for r, row in enumerate(modules):
        for y in range(top + r * scale, top + (r + 1) * scale):
            for c, dark in enumerate(row):
                if dark:
                    start = y * width + left + c * scale
                    luma[start:start + scale] = bytes([16]) * scale
    chroma = bytes([128]) * (width // 2 * height // 2)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + luma
                     + chroma + chroma)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_handler(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A plain HTTP server with this request handler on a free loopback port (an origin of its own); yields its
    base URL, without a trailing slash."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_project() -> contextlib.AbstractContextManager[str]:
    """The project folder over HTTP on a free loopback port; yields its base URL."""
    return serve_handler(functools.partial(_QuietHandler, directory=str(PROJECT_ROOT)))


# ---------------------------------------------------------------- a camera's photo, made in the page

# A 4,000 × 3,000 photo as a phone's camera takes it (a gradient with grain, JPEG at 0.92: ~3 MB), as a File:
# `page.evaluate(f"({CAMERA_PHOTO})(seed)")`; another seed, other grain (the same photo twice is one attachment).
CAMERA_PHOTO = """async (seed = 1) => {
  const canvas = new OffscreenCanvas(4000, 3000);
  const context = canvas.getContext("2d");
  const gradient = context.createLinearGradient(0, 0, 4000, 3000);
  gradient.addColorStop(0, "#3a6"); gradient.addColorStop(1, "#c84");
  context.fillStyle = gradient; context.fillRect(0, 0, 4000, 3000);
  const grain = context.getImageData(0, 0, 4000, 3000);
  for (let i = 0; i < grain.data.length; i += 1) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    if (i % 4 !== 3) { grain.data[i] += (seed >> 16) % 24; }
  }
  context.putImageData(grain, 0, 0);
  const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.92 });
  return new File([blob], "IMG_0001.JPG", { type: "image/jpeg" });
}"""
# That photo chosen in the page's photo input, as a person picks it: `fitted` lets pwa/photos.js size it (it listens
# for the change), else it stays as taken. Returns the size as taken.
CHOOSE_CAMERA_PHOTO = f"""async ({{ seed, fitted }}) => {{
  const photo = await ({CAMERA_PHOTO})(seed);
  const files = new DataTransfer();
  files.items.add(photo);
  const input = document.querySelector("input[name=photo]");
  input.files = files.files;
  if (fitted) {{ input.dispatchEvent(new Event("change", {{ bubbles: true }})); }}
  return photo.size;
}}"""


# ---------------------------------------------------------------- the small demo street in a browser

def wait_out_preparing(page: Page, seconds: float = 600) -> None:
    """A page whose index is still being built says so and reloads itself (server/web/preparing.py): wait until it
    is the page itself, failing past the deadline (a build that never ends must not hang the run)."""
    deadline, failure = time.monotonic() + seconds, f"{page.url} still 'preparing' after {seconds:.0f} s"
    while page.locator("meta[http-equiv=refresh]").count():
        left = deadline - time.monotonic()
        assert left > 0, failure
        try:
            page.wait_for_event("load", timeout=left * 1000)
        except PlaywrightTimeoutError:
            raise AssertionError(failure) from None


DEMO_PASSWORD = "demo-password"
# Screenshots for a person to look at (test-output/, git-ignored) are taken when LINLI_SCREENSHOTS=1: a full page
# costs about 0.3 s and a run takes some 200 of them, which nobody looks at in CI.
SCREENSHOTS = os.environ.get("LINLI_SCREENSHOTS") == "1"
PHONE = {"width": 390, "height": 844}
DEMO_RESIDENT = "resident:c1-g01-0002-1"  # in wangge01's grid; the resident account jumin1 is this person


@dataclass
class DemoSite:
    url: str  # ends in "/"
    couch: Couch
    firewall: Firewall
    browser: Browser


def _phone_keys(couch: Couch) -> dict[str, str]:
    """Every phone key registered and not revoked: id → its user."""
    rows = couch.accounts.all(startkey="phone_key:", endkey="phone_key:\ufff0", include_docs=True, as_list=True)
    return {r["id"]: r["doc"]["user"] for r in rows if not r["doc"]["revoked"]}


@contextlib.contextmanager
def new_phones_forgotten(site: DemoSite) -> Iterator[None]:
    """The phones signed in meanwhile are forgotten after, as if signed out (their keys revoked): an account holds
    at most grants.MAX_PHONES, and a module's tests sign one account in on more phones than that. Shuffled, the
    sixth phone got no key (test_pwa, seed 31: a locked category never opened on it; test_error_language_browser,
    seeds 34 and 35: the bar showed the refusal)."""
    before = _phone_keys(site.couch)
    yield
    for phone_key, user in _phone_keys(site.couch).items():
        if phone_key not in before:
            grants.unregister_phone(site.firewall, site.couch.accounts.get(user), phone_key, dt.datetime.now(dt.UTC))


@contextlib.contextmanager
def demo_site(couch_url: str, data_dir: Path, prepare: Callable[[Couch, Firewall], None], *,
              history: bool = False) -> Iterator[DemoSite]:
    """The small demo street (tests/conftest.py DEMO_SIZE) with the resident account `jumin1`, whatever
    `prepare` adds, served by `linli serve`; and one headless Chromium. Without the demo's year of history unless
    asked (`history`): its ~2,600 documents made each site's indexes take about a minute to build on a loaded
    machine (10 s without), and the tests here make what they look at."""
    from tests.conftest import DEMO_SIZE, make_settings
    from tests.sync_harness import serve, stop

    settings = make_settings(data_dir, f"site_{secrets.token_hex(3)}_")
    couch = connect(settings, couch_url)
    firewall = Firewall.open(settings, couch)
    demo.load(couch, firewall, size=DEMO_SIZE, password_hash=hashed(DEMO_PASSWORD), history=history)
    couch.accounts.save(accounts.make_user("jumin1", "居民甲", [Role.RESIDENT], demo.STREET_ID,
                                           hashed(DEMO_PASSWORD), resident=DEMO_RESIDENT))
    prepare(couch, firewall)
    build_views(couch)  # as a server that has run a while: no page here answers "preparing" (server/web/preparing.py)
    served = serve(couch_url, settings, free_port())
    playwright = sync_playwright().start()
    browser = launch(playwright)
    try:
        yield DemoSite(served.url, couch, firewall, browser)
    finally:
        browser.close()
        playwright.stop()
        stop(served)


def sign_in(context: BrowserContext, url: str, username: str) -> Page:
    """Sign in through the login page in this browser context; the page, on the user's home page."""
    page = context.new_page()
    page.goto(url + "login")
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{username} could not log in"
    return page


def screenshot(page: Page, path: Path, *, full_page: bool = True) -> None:
    """Save what `page` shows at `path` if screenshots were asked for (SCREENSHOTS)."""
    if SCREENSHOTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=full_page)
