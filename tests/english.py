"""What a Chinese page must not show: an English sentence. Used by tests/test_error_language.py.

An English sentence is two or more consecutive Latin words (letters, with ' or - inside) separated only by
spaces, in the text a person sees: element text outside <script>/<style>, and the alt, title, placeholder and
aria-label attributes. Not counted: names on the allow-list (product and format names a Chinese page uses as
they are) and whatever the person typed themselves (passed as `typed`).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from server.domain.i18n import MESSAGES

ALLOWED = ("BTHome", "SOS", "JPEG", "PNG", "WebP", "MAC", "ISO", "KB", "MB", "PDF", "Open311", "English")
_SENTENCE = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:[ \t]+[A-Za-z][A-Za-z'’-]*)+")
_VISIBLE_ATTRIBUTES = ("alt", "title", "placeholder", "aria-label")
# An error box or field message (templates/_errors.html, the pages' own), or any role="alert".
_ERROR = re.compile(r'<(p|div)\b([^>]*(?:class="(?:field-)?error"|role="alert")[^>]*)>(.*?)</\1>', re.S)


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        self.parts.extend(value for name, value in attrs if name in _VISIBLE_ATTRIBUTES and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(parser.parts)


def english_sentences(html: str, typed: tuple[str, ...] = ()) -> list[str]:
    text = visible_text(html)
    for word in (*typed, *ALLOWED):
        text = text.replace(word, " ")
    return _SENTENCE.findall(text)


def is_english(text: str) -> bool:
    """Latin words and no Chinese characters: what an English page's message should be."""
    return bool(re.search(r"[A-Za-z]{2}", text)) and not re.search(r"[\u3400-\u9fff]", text)


def shown_errors(html: str) -> list[str]:
    """The error messages the page shows (templates/_errors.html slots, and the pages' own error boxes)."""
    return [visible_text(body).strip() for _, attrs, body in _ERROR.findall(html)
            if " hidden" not in attrs and visible_text(body).strip()]


def raw_keys(html: str) -> list[str]:
    """Message keys shown as they are (a missing translation, or a key not passed through t())."""
    words = set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", visible_text(html)))
    return sorted(words & {key for messages in MESSAGES.values() for key in messages})
