"""Volunteers' tasks online (issue 14, item 3; server/web/task_pages.py): a grid worker assigns one from a
household's page or from a resident's need, the volunteer finds it at home and answers it, the grid worker sees the
answer; bad input is a 4xx that says what is wrong. Offline: tests/test_page_parity.py (same pages from the
replica) and tests/test_journey_volunteer.py (Chromium, a phone going offline).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from server.domain.access import Principal, may_see, write_refusal
from server.domain.declaration import DOC_TYPES, PROTECTED_TIERS, Role
from server.store.couch import Couch

from .street import C1, G1, STREET, login, logout, post_form

HOUSEHOLD = "household:c1-g01-0002"  # volunteer1 looks after it (the fixture below)
RESIDENT = "resident:c1-g01-0002-1"


@pytest.fixture
def looked_after(loaded: Couch) -> Couch:
    loaded.main.save({**loaded.main.get(HOUSEHOLD), "volunteers": ["user:volunteer1"]})
    return loaded


def assign(client: TestClient, **fields: str) -> object:
    values = {"household": HOUSEHOLD, "kind": "delivery", "assigned_to": "user:volunteer1", "resident": RESIDENT,
              "due_on": (dt.date.today() + dt.timedelta(days=2)).isoformat(), "notes": "送午餐上门", **fields}
    return post_form(client, "/tasks/new", values)


def the_task(couch: Couch) -> dict:
    (task,) = [r["doc"] for r in couch.main.all(startkey="task:", endkey="task:\ufff0", include_docs=True,
                                                   as_list=True)]
    return task


def test_a_grid_worker_assigns_a_task_and_the_volunteer_answers_it(looked_after: Couch, client: TestClient) -> None:
    login(client, "worker1")
    household = client.get(f"/households/{HOUSEHOLD}")
    assert f'href="/tasks/new?household={HOUSEHOLD}"' in household.text and "暂无志愿任务" in household.text
    form = client.get(f"/tasks/new?household={HOUSEHOLD}")
    assert form.status_code == 200 and '<option value="user:volunteer1">赵志愿</option>' in form.text
    assert "居民12" in form.text  # the resident it is for, chosen among the household's
    answer = assign(client)
    assert answer.status_code == 303 and answer.headers["location"] == f"/households/{HOUSEHOLD}#tasks"
    task = the_task(looked_after)
    assert (task["status"], task["address"], task["resident_name"], task["grid"]) == ("assigned", "c1-g01路2号",
                                                                                      "居民12", G1)
    # What the volunteer's phone will hold: nothing protected, not even sealed (a resident's record would be).
    protected = DOC_TYPES["task"].fields_in(*PROTECTED_TIERS)
    assert protected == [] and not [v for v in task.values() if isinstance(v, str) and v.startswith("enc:")]
    listed = client.get(f"/households/{HOUSEHOLD}").text
    assert "送物上门" in listed and "待接受" in listed and "赵志愿" in listed
    logout(client)

    login(client, "volunteer1")
    assert client.get("/").headers["location"] == "/tasks"
    home = client.get("/tasks")
    key = task["_id"].split(":")[1]
    assert f'href="/tasks/{key}"' in home.text and "送午餐上门" in home.text
    assert f'href="/households/{HOUSEHOLD}"' in home.text  # the households they look after
    page = client.get(f"/tasks/{key}")
    assert "接受任务" in page.text and "居民12" in page.text and "c1-g01路2号" in page.text
    no_note = post_form(client, f"/tasks/{key}/answer", {"answer": "done", "volunteer_note": " "})
    assert no_note.status_code == 400 and "请填写完成情况或婉拒原因" in no_note.text
    assert post_form(client, f"/tasks/{key}/answer", {"answer": "accepted"}).status_code == 303
    assert the_task(looked_after)["status"] == "accepted"
    done = post_form(client, f"/tasks/{key}/answer", {"answer": "done", "volunteer_note": "已送到，老人很高兴"})
    assert done.status_code == 303 and done.headers["location"] == f"/tasks/{key}"
    again = post_form(client, f"/tasks/{key}/answer", {"answer": "accepted"})  # done is done
    assert again.status_code == 400 and "该任务当前状态下不能这样反馈" in again.text
    assert client.get(f"/tasks/new?household={HOUSEHOLD}").status_code == 403  # staff assign, volunteers answer
    logout(client)

    login(client, "worker1")
    seen = client.get(f"/tasks/{key}").text
    assert "已完成" in seen and "已送到，老人很高兴" in seen and "接受任务" not in seen
    assert post_form(client, f"/tasks/{key}/answer", {"answer": "declined", "volunteer_note": "x"}).status_code == 403
    logout(client)
    login(client, "worker3")  # another community's worker: as if it did not exist
    assert client.get(f"/tasks/{key}").status_code == client.get("/tasks/nothing").status_code == 404


def test_a_task_opened_from_a_need_is_prefilled_names_it_and_matches_the_need(looked_after: Couch,
                                                                            client: TestClient) -> None:
    need = {"_id": "need:tasks1", "type": "need", **{k: v for k, v in looked_after.main.get(RESIDENT).items()
                                                      if k in ("street", "community", "grid", "household")},
            "resident": RESIDENT, "category": "medical_escort", "description": "下周去医院复查，需要有人陪同",
            "status": "open", "created_by": "user:worker1", "created_at": dt.datetime.now(dt.UTC).isoformat()}
    looked_after.main.save(need)
    login(client, "worker1")
    form = client.get("/tasks/new?need=need:tasks1").text
    assert '<option value="accompany" selected>' in form and f'<option value="{RESIDENT}" selected>' in form
    assert ">下周去医院复查，需要有人陪同</textarea>" in form and 'name="need" value="need:tasks1"' in form
    assert assign(client, kind="accompany", need="need:tasks1").status_code == 303
    task = the_task(looked_after)
    assert task["need"] == "need:tasks1"
    # The need is matched to the task: handled, off the open lists, and its page says a volunteer was asked.
    handled = looked_after.main.get("need:tasks1")
    assert (handled["status"], handled["task"], handled["handled_by"]) == ("matched", task["_id"], "user:worker1")
    assert "assigned_to" not in handled  # hours are claimed for the task, never a second time for the need
    assert "已安排志愿者帮忙" in client.get("/needs/tasks1").text
    refused = assign(client, kind="accompany", need="need:tasks1")  # given once
    assert refused.status_code == 409 and "这条需求已经处理过了" in refused.text
    logout(client)
    login(client, "volunteer1")  # declines: the need may go to another volunteer, and is matched to that task
    assert post_form(client, f"/tasks/{task['_id'][5:]}/answer",
                     {"answer": "declined", "volunteer_note": "这周要出差"}).status_code == 303
    logout(client)
    login(client, "worker1")
    assert assign(client, kind="accompany", need="need:tasks1").status_code == 303
    assert looked_after.main.get("need:tasks1")["task"] not in (None, task["_id"])


@pytest.mark.parametrize(("fields", "status", "says"), [
    ({"assigned_to": ""}, 400, "请选择本网格的一位志愿者"),
    ({"assigned_to": "user:worker1"}, 400, "请选择本网格的一位志愿者"),  # a task goes to a volunteer
    ({"resident": "resident:c1-g01-0001-1"}, 400, None),  # not of this household
    ({"due_on": "下周二"}, 400, None),
    ({"kind": "party"}, 400, None),
    ({"household": "household:nowhere"}, 404, None),
    ({"household": ""}, 404, None),
    ({"household": "household:c2-g01-0001"}, 404, None),  # another community's: as if it did not exist
    ({"need": "need:nowhere"}, 404, None),
])
def test_a_task_form_sent_wrong_says_what_is_wrong(looked_after: Couch, client: TestClient, fields: dict,
                                                   status: int, says: str | None) -> None:
    login(client, "worker1")
    answer = assign(client, **fields)
    assert answer.status_code == status, answer.text
    assert says is None or says in answer.text
    assert not looked_after.main.all(startkey="task:", endkey="task:\ufff0", as_list=True)


def test_a_stale_or_unknown_answer_is_refused_and_the_lists_are_whose_they_are(looked_after: Couch,
                                                                                client: TestClient) -> None:
    login(client, "worker1")
    assign(client)
    key = the_task(looked_after)["_id"].split(":")[1]
    logout(client)
    login(client, "volunteer1")
    assert post_form(client, f"/tasks/{key}/answer", {"answer": "explode"}).status_code == 400
    stale = post_form(client, f"/tasks/{key}/answer", {"answer": "accepted", "_rev": "1-0000"})
    assert stale.status_code == 409 and "该任务已被他人修改" in stale.text
    logout(client)
    login(client, "secretary1")  # the community's secretary sees where each task stands
    assert re.search(rf'href="/tasks/{key}"', client.get("/tasks").text)
    logout(client)
    login(client, "admin")
    assert client.get("/tasks").status_code == 403  # the list is grid work: volunteers, grid workers, secretaries


def test_only_the_grids_active_volunteers_are_offered(looked_after: Couch, client: TestClient) -> None:
    login(client, "worker1")
    assert 'value="user:volunteer1"' in client.get(f"/tasks/new?household={HOUSEHOLD}").text
    volunteer = looked_after.accounts.get("user:volunteer1")
    looked_after.accounts.save({**volunteer, "active": False})
    assert 'value="user:volunteer1"' not in client.get(f"/tasks/new?household={HOUSEHOLD}").text
    assert assign(client).status_code == 400  # and a form naming them anyway is refused, saying why


def test_a_volunteers_phone_gets_no_visit_that_records_a_protected_field() -> None:
    """Visits and needs reach the volunteer assigned or who wrote them (access._task), but never one carrying a
    protected field, sealed or not: their phone holds none (tests/test_journey_volunteer.py scans a real one)."""
    volunteer = Principal("user:v", frozenset({Role.VOLUNTEER}), STREET, frozenset({C1}), frozenset({G1}))
    now = dt.datetime.now(dt.UTC)
    visit = {"_id": "visit:x", "type": "visit", "street": STREET, "community": C1, "grid": G1, "household": HOUSEHOLD,
             "kind": "care", "visited_at": now.isoformat(), "assigned_to": "user:v", "created_by": "user:w",
             "created_at": now.isoformat()}
    assert may_see(volunteer, visit) and may_see(volunteer, {**visit, "assigned_to": None, "created_by": "user:v"})
    for recorded in ({"blood_pressure": "enc:AQAA"}, {"blood_pressure": "150/95"}):
        assert not may_see(volunteer, {**visit, **recorded})
        mine = {**visit, **recorded, "assigned_to": None, "created_by": "user:v"}
        assert not may_see(volunteer, mine) and write_refusal(volunteer, None, mine, {}, now)


def test_a_declined_task_is_assigned_again_from_its_page(looked_after: Couch, client: TestClient) -> None:
    login(client, "worker1")
    assign(client, kind="accompany", notes="陪同去医院复查")
    declined = the_task(looked_after)
    key = declined["_id"].split(":")[1]
    logout(client)
    login(client, "volunteer1")
    assert "重新分派" not in client.get(f"/tasks/{key}").text
    post_form(client, f"/tasks/{key}/answer", {"answer": "declined", "volunteer_note": "这周出差"})
    assert "重新分派" not in client.get(f"/tasks/{key}").text  # staff assign; the volunteer only answers
    logout(client)
    login(client, "worker1")
    page = client.get(f"/tasks/{key}").text
    assert "这周出差" in page and f'href="/tasks/new?task={declined["_id"]}"' in page
    form = client.get(f"/tasks/new?task={declined['_id']}").text
    assert '<option value="accompany" selected>' in form and ">陪同去医院复查</textarea>" in form
    assert f'<option value="{RESIDENT}" selected>' in form and 'name="household" value="' + HOUSEHOLD in form
    assert assign(client, kind="accompany", notes="陪同去医院复查").status_code == 303
    tasks = {t["doc"]["status"] for t in looked_after.main.all(startkey="task:", endkey="task:\ufff0",
                                                                include_docs=True, as_list=True)}
    assert tasks == {"declined", "assigned"}  # the declined one stays as it was answered
