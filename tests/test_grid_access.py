"""Who may browse a grid, and what its pages list: one policy (server/domain/access.py may_see), asked by every
page that gates by grid or household, and shipped to the offline app as data (/pwa/session.json).

The offline side of the same answers (a volunteer's phone) is in tests/test_pwa.py.
"""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from server.domain.access import Principal, offline_grids
from server.store.couch import Couch

from .street import C1, G1, G2, G3, STREET, login, post_form

ASSIGNED = "household:c1-g01-0002"  # volunteer1's, in the test below
NOT_ASSIGNED = "household:c1-g01-0001"


@pytest.fixture
def assigned(loaded: Couch) -> Couch:
    household = loaded.main.get(ASSIGNED)
    loaded.main.save({**household, "volunteers": ["user:volunteer1"]})
    return loaded


def rows(page_text: str) -> set[str]:
    return set(re.findall(r'href="/households/(household:[^"]+)"', page_text))


def test_a_volunteer_sees_exactly_their_households_and_nothing_of_the_residents(
        assigned: Couch, client: TestClient) -> None:
    login(client, "volunteer1")
    home = client.get("/")
    assert home.headers["location"] == "/tasks"  # their tasks and households, as on the phone (test_tasks.py)
    page = client.get(f"/grids/{G1}")
    assert page.status_code == 200
    assert rows(page.text) == {ASSIGNED}
    assert 'id="household-total">1<' in page.text
    assert "居民12" not in page.text  # the head's name is a resident's: grid staff's, not a volunteer's
    hit = client.get(f"/grids/{G1}", params={"q": "路2号"}, headers={"HX-Request": "true"})
    assert rows(hit.text) == {ASSIGNED}
    for miss in ("路1号", "居民12"):  # another household's address; a name they may not see
        assert rows(client.get(f"/grids/{G1}", params={"q": miss}, headers={"HX-Request": "true"}).text) == set()

    household = client.get(f"/households/{ASSIGNED}")
    assert household.status_code == 200
    assert "居民12" not in household.text and "resident:" not in household.text
    assert client.get(f"/households/{ASSIGNED}/visits/new").status_code == 200  # they log their visits
    assert client.get(f"/households/{ASSIGNED}/edit").status_code == 403  # households are grid staff's to edit

    # What they may not see is not found, exactly as what does not exist (server/web/lookup.py).
    for unseen in (f"/grids/{G2}", f"/grids/{G3}", f"/households/{NOT_ASSIGNED}",
                   f"/households/{NOT_ASSIGNED}/visits/new", "/households/household:c2-g01-0001"):
        assert client.get(unseen).status_code == 404, unseen


def test_a_grid_worker_of_another_grid_gets_404_on_every_page_of_it(client: TestClient) -> None:
    login(client, "worker3")
    for unseen in (f"/grids/{G1}", f"/households/{NOT_ASSIGNED}", f"/households/{NOT_ASSIGNED}/visits/new",
                   f"/households/{NOT_ASSIGNED}/edit"):
        answer = client.get(unseen)
        assert answer.status_code == 404, unseen
        assert answer.text == client.get(unseen.replace("c1-g01", "c9-g99")).text, unseen  # as a missing one
    reveal = post_form(client, "/residents/resident:c1-g01-0001-1/reveal",
                       {"category": "contact", "purpose": "routine_visit"})
    assert reveal.status_code == 404 and "10012345678" not in reveal.text


# For each page parameter naming a document: one in another community's grid that worker1 may not see, and one
# that does not exist. Pages of another kind ({key}: the user's own phone keys) are not about others' documents.
_HIDDEN_AND_MISSING = {
    "grid_id": (G3, "grid:c9-g99"), "household_id": ("household:c2-g01-0001", "household:c9-g99-0001"),
    "resident_id": ("resident:c2-g01-0001-1", "resident:c9-g99-0001-1"),
    "doc_id": ("household:c2-g01-0001", "household:c9-g99-0001"), "id": ("hidden", "nowhere"),
    "name": ("photo-1.png", "photo-1.png"),
    "claim_id": ("claim:hidden", "claim:nowhere"), "answer": ("confirm", "confirm"), "key": ("hidden", "nowhere"),
    "what": ("cancel", "cancel"),  # the resource pool's acts on a booking of resource:{key}
    "period": ("2026-H1", "2026-H1"),  # a service project's evaluation (its project is the {key})
}
_NOT_ABOUT_DOCUMENTS = {"/phone-keys/{key}", "/pwa/messages/{lang}.json"}  # a phone key; a language


def test_what_a_user_may_not_see_answers_exactly_as_what_does_not_exist(loaded: Couch, client: TestClient) -> None:
    """No existence oracle (server/web/lookup.py): every page with a document in its path, GET and POST, answers
    another community's document with the very page it answers a missing one with, 404."""
    place = {"street": STREET, "community": "community:c2", "grid": G3, "household": "household:c2-g01-0001"}
    photo = {"photo-1.png": {"content_type": "image/png", "data": "iVBORw0KGgo="}}
    for kind in ("alert", "visit", "service_request", "claim", "matter", "resource", "match", "meeting", "mediation",
                 "service_project"):
        loaded.main.save({"_id": f"{kind}:hidden", "type": kind, **place, "_attachments": photo})
    login(client, "worker1")
    asked = 0
    for route in client.app.routes:
        if not isinstance(route, Route) or "{" not in route.path or route.path in _NOT_ABOUT_DOCUMENTS:
            continue
        hidden, missing = (re.sub(r"\{(\w+)\}", lambda m, i=i: _HIDDEN_AND_MISSING[m[1]][i], route.path)
                           for i in (0, 1))
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            answers = [client.get(path) if method == "GET" else post_form(client, path, {})
                       for path in (hidden, missing)]
            assert answers[0].status_code == answers[1].status_code == 404, (method, hidden, answers[0].status_code)
            assert answers[0].text == answers[1].text, (method, hidden)
            asked += 1
    assert asked >= 19, asked  # every such page was asked (a route with a parameter not in the table fails above)


def test_a_secretary_browses_the_grids_of_their_community_only(client: TestClient) -> None:
    login(client, "secretary1")
    assert rows(client.get(f"/grids/{G1}").text) == {f"household:c1-g01-000{n}" for n in (1, 2, 3)}
    assert rows(client.get(f"/grids/{G2}").text) == {"household:c1-g02-0001"}
    assert client.get(f"/grids/{G3}").status_code == 404
    assert client.get("/households/household:c2-g01-0001").status_code == 404


@pytest.mark.parametrize(("username", "browse", "edit"), [
    ("worker1", [G1], [G1]),
    ("volunteer1", [G1], []),
    ("worker3", [G3], [G3]),
    ("secretary1", [G1, G2], [G1, G2]),
    ("admin", [G1, G2, G3], [G1, G2, G3]),
])
def test_the_offline_app_gets_the_policys_answers_as_data(client: TestClient, username: str, browse: list[str],
                                                          edit: list[str]) -> None:
    login(client, username)
    session = client.get("/pwa/session.json").json()
    assert (session["browsable_grids"], session["household_edit_grids"], session["alert_act_grids"],
            session["task_assign_grids"]) == (browse, edit, edit, edit)
    # a grid's alerts are acted on, and its volunteers' tasks assigned, by those who edit its households
    # (access.WRITE_RULES)


def test_offline_grids_is_may_see_on_the_grid() -> None:
    grids = [{"_id": g, "type": "grid", "street": STREET, "community": C1, "grid": g} for g in (G1, G2)]
    volunteer = Principal("user:v", frozenset({"volunteer"}), STREET, frozenset({C1}), frozenset({G1}))
    assert offline_grids(volunteer, grids) == {"browse": [G1], "edit_households": [], "act_on_alerts": [],
                                               "assign_tasks": []}
    elsewhere = Principal("user:v", frozenset({"volunteer"}), "street:other", frozenset({C1}), frozenset({G1}))
    assert offline_grids(elsewhere, grids) == {"browse": [], "edit_households": [], "act_on_alerts": [],
                                               "assign_tasks": []}
    worker = Principal("user:w", frozenset({"grid_worker"}), STREET, frozenset({C1}), frozenset({G2}))
    assert offline_grids(worker, grids) == {"browse": [G2], "edit_households": [G2], "act_on_alerts": [G2],
                                            "assign_tasks": [G2]}
    # A secretary works in every grid of their community, none of another's.
    secretary = Principal("user:s", frozenset({"secretary"}), STREET, frozenset({C1}))
    grids.append({"_id": "grid:c2-g1", "type": "grid", "street": STREET, "community": "community:c2",
                  "grid": "grid:c2-g1"})
    assert offline_grids(secretary, grids) == {"browse": [G1, G2], "edit_households": [G1, G2],
                                               "act_on_alerts": [G1, G2], "assign_tasks": [G1, G2]}
