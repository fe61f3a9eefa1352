"""Every shared template renders byte-identically in Jinja2 (the server) and Nunjucks (the service worker,
offline), over the fixture contexts in tests/templates/<template>.json, in both languages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.domain.i18n import LANGUAGES, MESSAGES
from server.store.config import LOCAL_TZ, PROJECT_ROOT
from server.web.app import templates
from server.web.assets import asset_urls
from server.web.pwa_routes import TEMPLATES_DIR, shared_templates

from .node_process import NodeProcess

FIXTURES = Path(__file__).parent / "templates"
SHARED = shared_templates()  # all but the desktop-only pages (server/web/pwa_routes.py ONLINE_ONLY_TEMPLATES)
COMMON = {"csrf_token": "tok3n-\"quoted\"&<x>", "display": "", "time_zone": "Asia/Shanghai", "works_offline": True,
          "user": {"_id": "user:wangge01", "display_name": "王网格 & <测试>", "roles": ["grid_worker"],
                   "grids": ["grid:g1"]},
          "assets": asset_urls()}


class Nunjucks:
    """One Node process rendering with pwa/render.js."""

    def __init__(self) -> None:
        self.node = NodeProcess(PROJECT_ROOT / "pwa" / "tests" / "render_templates.mjs",
                                {"templates": str(TEMPLATES_DIR), "timeZone": LOCAL_TZ.key, "messages": MESSAGES})

    def render(self, template: str, lang: str, context: dict[str, Any]) -> str:
        answer = self.node.ask({"template": template, "lang": lang, "context": context})
        if "error" in answer:
            raise AssertionError(f"Nunjucks cannot render {template}: {answer['error']}")
        return answer["html"]

    def close(self) -> None:
        self.node.close()


@pytest.fixture(scope="module")
def nunjucks() -> Iterator[Nunjucks]:
    engine = Nunjucks()
    yield engine
    engine.close()


def contexts(template: str) -> list[dict[str, Any]]:
    """A fixture file holds one context or a list of them (e.g. empty and full lists)."""
    path = FIXTURES / (template.removesuffix(".html") + ".json")
    assert path.exists(), f"{template} has no fixture context: add {path.relative_to(PROJECT_ROOT)}"
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, list) else [loaded]


def jinja2(template: str, lang: str, context: dict[str, Any]) -> str:
    from server.domain.i18n import translator

    return templates.env.get_template(template).render({**context, "t": translator(lang), "lang": lang})


@pytest.mark.parametrize("template", SHARED)
def test_template_renders_alike_in_both_engines(template: str, nunjucks: Nunjucks) -> None:
    for n, context in enumerate(contexts(template)):
        for lang in LANGUAGES:
            full = {**COMMON, **context}
            server, browser = jinja2(template, lang, full), nunjucks.render(template, lang, full)
            assert browser == server, f"{template} context {n} ({lang}) differs between Jinja2 and Nunjucks"
            assert "Undefined" not in server and "undefined" not in browser


def test_a_difference_is_caught(nunjucks: Nunjucks) -> None:
    """The harness can fail: a value Jinja2 prints as "True" and JavaScript as "true" differs."""
    context = {**COMMON, "h": {"id": "household:1", "address": True, "head_name": "", "member_count": 1, "tags": []}}
    page = {"rows": [context["h"]], "next_offset": None}
    server = jinja2("_household_rows.html", "zh", {**context, "page": page, "grid": {"_id": "g"}, "q": ""})
    browser = nunjucks.render("_household_rows.html", "zh", {**context, "page": page, "grid": {"_id": "g"}, "q": ""})
    assert "True" in server and "true" in browser and server != browser
