"""Photos sized on the phone (issue 22 item 2, pwa/photos.js) in Chromium: a camera-sized photo with EXIF location
comes out with its long side at the rule's 1,600 px, under 300 KB, with no metadata; an undecodable file gives
nothing to store. The page wiring (the message beside the input, the stored JPEG) is in
tests/test_error_language_browser.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

from server.domain.field_rules import PHOTO_FIT, photo_fit
from tests.browser import CAMERA_PHOTO, launch, serve_project

# A 4,000 × 3,000 photo (a gradient with grain, as a camera's is) encoded at high quality, and an EXIF segment with
# a GPS position spliced in after its start marker, as a phone's camera writes one.
CAMERA_PHOTO_WITH_GPS = f"""async () => {{
  const jpeg = new Uint8Array(await (await ({CAMERA_PHOTO})(1)).arrayBuffer());
  const exif = new TextEncoder().encode("Exif\\0\\0MM\\0*GPSLatitude 31.2304N GPSLongitude 121.4737E");
  const segment = new Uint8Array([0xff, 0xe1, (exif.length + 2) >> 8, (exif.length + 2) & 255, ...exif]);
  const bytes = new Uint8Array([...jpeg.slice(0, 2), ...segment, ...jpeg.slice(2)]);
  return new File([bytes], "IMG_0001.JPG", {{ type: "image/jpeg" }});
}}"""


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with serve_project() as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(url + "/pwa/README.md")  # any page of the origin: the module is imported from it
        yield page
        browser.close()


def test_a_camera_photo_is_brought_to_the_rule_and_loses_its_metadata(page: Page) -> None:
    result = page.evaluate(f"""async (fit) => {{
      const {{ fitPhoto }} = await import("/pwa/photos.js");
      const photo = await ({CAMERA_PHOTO_WITH_GPS})();
      const fitted = await fitPhoto(photo, fit);
      const bitmap = await createImageBitmap(fitted);
      const text = new TextDecoder("latin1").decode(await fitted.arrayBuffer());
      return {{ before: photo.size, before_has_gps: (await photo.text()).includes("GPSLatitude"), after: fitted.size,
               type: fitted.type, name: fitted.name, width: bitmap.width, height: bitmap.height,
               exif: text.includes("Exif"), gps: text.includes("GPS") }};
    }}""", photo_fit())
    assert result["before"] > 1024 * 1024 and result["before_has_gps"], result
    assert (result["width"], result["height"]) == (PHOTO_FIT.long_side, PHOTO_FIT.long_side * 3 // 4), result
    assert result["after"] <= PHOTO_FIT.target_bytes, result
    assert result["type"] == "image/jpeg" and result["name"] == "IMG_0001.jpg"
    assert not result["exif"] and not result["gps"], result


def test_a_small_photo_keeps_its_size_and_an_undecodable_one_gives_nothing(page: Page) -> None:
    result = page.evaluate("""async (fit) => {
      const { fitPhoto } = await import("/pwa/photos.js");
      const canvas = new OffscreenCanvas(640, 480);
      canvas.getContext("2d").fillRect(0, 0, 10, 10);
      const small = new File([await canvas.convertToBlob({ type: "image/png" })], "door.png", { type: "image/png" });
      const fitted = await fitPhoto(small, fit);
      const bitmap = await createImageBitmap(fitted);
      const bytes = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);  // a JPEG's start, then nothing
      const broken = new File([bytes], "broken.jpg", { type: "image/jpeg" });
      return { width: bitmap.width, height: bitmap.height, type: fitted.type, broken: await fitPhoto(broken, fit) };
    }""", photo_fit())
    assert result == {"width": 640, "height": 480, "type": "image/jpeg", "broken": None}
