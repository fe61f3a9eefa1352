"""A volunteer's daily work, in Chromium against `linli serve` on the demo (issue 14, item 3; PRODUCT.md: each
grid's volunteers visit, deliver and accompany the households they look after, as the grid worker asks).

The grid worker assigns a visit from the household's page; the volunteer, on a phone, finds it at home, goes
offline, marks it done with a note; back online it syncs, and the grid worker sees it done with the note. The
volunteer's replica holds no protected field, sealed or not, and no key of any kind.
Screenshots of the key steps: test-output/journeys/volunteer/.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from playwright.sync_api import Browser, expect

from server.domain.declaration import DOC_TYPES, ENCRYPTED_PREFIX, PROTECTED_TIERS
from server.services import demo
from tests.journeys import Person
from tests.test_serve import Served

VOLUNTEER = "zhiyuan01a"
# `linli serve --residents 400` (tests/test_serve.py): the household the demo gives this volunteer first.
STREET = list(demo.generate(size=demo.DemoSize.for_residents(400)))
HOUSEHOLD = next(d for d in STREET if d["type"] == "household" and f"user:{VOLUNTEER}" in d.get("volunteers", []))
HEAD = next(d for d in STREET if d["_id"] == HOUSEHOLD["head"])
# Types a phone must never hold: keys wrapped for it, a resident's data keys, blind indexes.
KEY_TYPES = ("key_grant", "index_grant", "data_key", "number_index", "keyring")

REPLICA = """async (user) => {
    for (const src of ['/pwa/vendor/pouchdb.min.js', '/pwa/vendor/pouchdb.indexeddb.min.js']) {
        if (!document.querySelector(`script[src='${src}']`)) {
            await new Promise((ok) => { const s = document.createElement('script'); s.src = src; s.onload = ok;
                                         document.head.append(s); });
        }
    }
    const db = new PouchDB(`linli-${user}`, { adapter: 'indexeddb' });  // the service worker's replica
    return (await db.allDocs({ include_docs: true })).rows.map((row) => row.doc);
}"""


def protected_in(doc: dict[str, Any]) -> list[str]:
    """What of a replica's document should never be on a volunteer's phone: sealed values anywhere in it, fields of a
    protected tier (sealed or not), the document itself if it is a key."""
    found = [f"{doc['_id']} is a key" for t in KEY_TYPES if doc.get("type") == t]

    def sealed(value: Any, at: str) -> None:
        if isinstance(value, str) and value.startswith(ENCRYPTED_PREFIX):
            found.append(f"{doc['_id']}.{at} is sealed")
        elif isinstance(value, dict):
            for k, v in value.items():
                sealed(v, f"{at}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                sealed(v, f"{at}[{i}]")

    for name, value in doc.items():
        if name != "_attachments":
            sealed(value, name)
    declared = DOC_TYPES.get(doc.get("type", ""))
    if declared is not None:
        found += [f"{doc['_id']}.{name} is protected" for name in declared.fields_in(*PROTECTED_TIERS) if name in doc]
    return found


def test_protected_in_finds_what_a_volunteer_must_not_hold() -> None:
    """The replica check below can fail: a sealed value, a protected field in the clear, a key grant."""
    resident = next(d for d in STREET if d["type"] == "resident" and "phone" in d)
    assert protected_in({**resident, "phone": "enc:AQAA"}) and protected_in(resident)
    assert protected_in({"_id": "key_grant:x", "type": "key_grant"})
    assert protected_in({"_id": "visit:x", "type": "visit", "needs": ["enc:AQAA"]})
    assert not protected_in({**HOUSEHOLD, "_id": HOUSEHOLD["_id"]})


def test_a_visit_assigned_is_done_offline_and_the_grid_worker_sees_it(journey_browser: Browser,
                                                                       journey_served: Served) -> None:
    tail = secrets.token_hex(3)
    worker = Person(journey_browser, journey_served, "wangge01", role="volunteer")
    worker.go(f"households/{HOUSEHOLD['_id']}")
    worker.page.click("a:has-text('分派志愿任务')")
    worker.page.wait_for_url("**/tasks/new?household=*")
    worker.page.select_option("select[name=kind]", "visit")
    worker.page.select_option("select[name=assigned_to]", f"user:{VOLUNTEER}")
    worker.page.select_option("select[name=resident]", HEAD["_id"])
    worker.page.fill("input[name=due_on]", (dt.date.today() + dt.timedelta(days=1)).isoformat())
    worker.page.fill("textarea[name=notes]", f"上门看望，聊聊近况 {tail}")
    worker.shot("1-grid-worker-assigns")
    worker.act("分派")
    worker.page.wait_for_url(f"**/households/{HOUSEHOLD['_id']}#tasks")
    assigned = worker.page.locator("ul.household-tasks a.row", has_text=tail)
    expect(assigned).to_contain_text("探访")
    expect(assigned).to_contain_text("待接受")

    volunteer = Person(journey_browser, journey_served, VOLUNTEER, role="volunteer", phone=True)
    assert volunteer.page.url.endswith("/tasks")  # the volunteer's home
    volunteer.synced()  # the replica holds their tasks and households
    task = volunteer.row("#tasks", tail)
    expect(task).to_contain_text(HOUSEHOLD["address"])
    expect(task).to_contain_text(HEAD["name"])
    expect(task).to_contain_text("待接受")
    expect(volunteer.page.locator("#my-households a.row", has_text=HOUSEHOLD["address"])).to_have_count(1)
    assert volunteer.page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # 390 px
    volunteer.shot("2-volunteer-home")

    replica = volunteer.page.evaluate(REPLICA, f"user:{VOLUNTEER}")
    held = {d["type"] for d in replica if "type" in d}
    assert {"task", "household"} <= held  # their tasks and households are there to check
    assert [problem for doc in replica for problem in protected_in(doc)] == []

    task.click()
    volunteer.page.wait_for_url("**/tasks/*")
    task_url = volunteer.page.url
    volunteer.synced()
    volunteer.offline()
    answer = volunteer.page.reload()
    assert answer is not None and answer.headers.get("x-linli-offline") == "1", "not answered by the service worker"
    volunteer.page.fill("textarea[name=volunteer_note]", f"老人精神不错，已陪聊一小时 {tail}")
    volunteer.act("已完成")
    expect(volunteer.page.locator("h1")).to_contain_text("已完成")
    expect(volunteer.page.locator("#volunteer-note")).to_contain_text(tail)
    volunteer.page.wait_for_function("() => Number(document.querySelector('#sync-state').dataset.pending) >= 1")
    volunteer.shot("3-done-offline")

    volunteer.online()
    volunteer.synced()  # the answer reaches the server; nothing is left waiting
    worker.go(f"households/{HOUSEHOLD['_id']}")
    expect(worker.page.locator("ul.household-tasks a.row", has_text=tail)).to_contain_text("已完成")
    worker.page.goto(task_url)
    expect(worker.page.locator("h1")).to_contain_text("已完成")
    expect(worker.page.locator("#volunteer-note")).to_contain_text(f"已陪聊一小时 {tail}")
    worker.shot("4-grid-worker-sees-it-done")
    volunteer.close()
    worker.close()
