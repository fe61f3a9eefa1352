"""Matching needs to offers of help (issue 17, item 4): the pure rules and score (server/domain/matching.py), then
the pages on the small street with a real pouchdb-server (server/web/match_pages.py): every proposed match lists
its factors and every unmatched need its reasons, in both languages; an accepted match survives re-running the
matcher; bad input (a match meant for someone else, answering twice, impossible hours) is a clear 4xx and
changes nothing stored. The whole way in Chromium: tests/test_journey_matching.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
from starlette.testclient import TestClient

from server.domain import matching as rules
from server.domain.declaration import DOC_TYPES, HELP_KINDS, PROTECTED_TIERS, SPOKEN_LANGUAGES, Role, validate
from server.domain.field_rules import COMMON_NEEDS
from server.domain.i18n import MESSAGES
from server.security import accounts
from server.store.couch import Couch, get_or_none

from .street import C1, G1, G2, PASSWORD, STREET, hashed, login, logout, post_form

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
EVENINGS = [{"day": d, "start": "18:00", "end": "21:00"} for d in range(5)]


def need_view(n: int = 1, **changes: object) -> rules.NeedView:
    view = rules.NeedView(f"need:{n}", C1, G1, "3号楼", "shopping", "帮忙买菜，需要会用手机支付", "putonghua",
                          rules.slots_of(EVENINGS), f"2026-11-{n:02d}T08:00:00+00:00")
    return dataclasses.replace(view, **changes)


def offer_view(n: int = 1, **changes: object) -> rules.OfferView:
    view = rules.OfferView(f"offer:{n}", f"user:v{n}", C1, G1, "3号楼", "shopping", frozenset({"putonghua"}), 2,
                           rules.slots_of([{"day": 0, "start": "19:00", "end": "22:00"}]), ("手机支付",))
    return dataclasses.replace(view, **changes)


# ---------------------------------------------------------------- the pure rules

def test_every_proposal_lists_its_factors_and_every_unmatched_need_its_reasons_in_both_languages() -> None:
    """A seeded random street: whatever the matcher decides, it says why, in words both languages have."""
    rng = random.Random(17)
    grids = [G1, G2, "grid:c2-g01"]
    kinds = list(COMMON_NEEDS)

    def hours() -> tuple[rules.Slot, ...]:
        day, start = rng.randrange(7), rng.randrange(8, 20)
        return ((day, start * 60, (start + rng.randint(1, 3)) * 60),)

    needs = [need_view(i, grid=rng.choice(grids), community=C1 if rng.random() < 0.8 else "community:c2",
                       help_kind=rng.choice(kinds), language=rng.choice(SPOKEN_LANGUAGES[:2]), hours=hours(),
                       created_at=f"2026-11-{i % 28 + 1:02d}T08:00:00+00:00") for i in range(400)]
    offers = [offer_view(i, grid=rng.choice([*grids, None]), help_kind=rng.choice(kinds), hours=hours(),
                         capacity=rng.randint(1, 3), languages=frozenset(rng.sample(SPOKEN_LANGUAGES[:2], 1)),
                         keeper=f"user:v{i % 30}") for i in range(120)]
    plan = rules.plan(needs, offers, rules.Record())
    assert plan.proposals and plan.unmatched  # both kinds of outcome present
    proposed = {p.need.id for p in plan.proposals}
    assert proposed.isdisjoint(plan.unmatched) and proposed | set(plan.unmatched) == {n.id for n in needs}
    for proposal in plan.proposals:
        assert [f["factor"] for f in proposal.factors] == [f.name for f in rules.FACTORS]
        assert proposal.score == round(sum(f["points"] for f in proposal.factors), 2)
        assert proposal.hours  # the time in common, shown to both sides
        for f in proposal.factors:
            assert all(f["words"] in MESSAGES[lang] for lang in ("zh", "en"))
            assert "{" not in MESSAGES["zh"][f["words"]].format(**f["params"])
    for reasons in plan.unmatched.values():
        assert reasons
        for key, params in reasons:
            assert all("{" not in MESSAGES[lang][key].format(**params) for lang in ("zh", "en"))
    taken: dict[str, int] = {}
    for proposal in plan.proposals:
        taken[proposal.offer.id] = taken.get(proposal.offer.id, 0) + 1
    assert all(taken[o.id] <= o.capacity for o in offers if o.id in taken)


@pytest.mark.parametrize(("rule", "changes"), [
    ("kind", {"help_kind": "cleaning"}),
    ("place", {"grid": G2}),
    ("language", {"languages": frozenset({"english"})}),
    ("time", {"hours": ((5, 9 * 60, 12 * 60),)}),
    ("capacity", {"capacity": 0}),
])
def test_each_must_match_rule_alone_leaves_the_offer_out_and_is_named(rule: str, changes: dict) -> None:
    assert rules.plan([need_view()], [offer_view()], rules.Record()).proposals  # the unchanged pair matches
    plan = rules.plan([need_view()], [offer_view(**changes)], rules.Record())
    assert not plan.proposals
    assert plan.unmatched["need:1"] == [(f"match_reason_{rule}", {"count": 1, "total": 1})]
    elsewhere = rules.plan([need_view()], [offer_view(community="community:c2", grid=None)], rules.Record())
    assert elsewhere.unmatched["need:1"] == [("match_reason_no_offers", {})]  # another community's: not looked at


def test_capacity_goes_to_the_oldest_need_and_an_offer_proposed_before_is_not_proposed_again() -> None:
    offer = offer_view(capacity=1)
    plan = rules.plan([need_view(2), need_view(1)], [offer], rules.Record())
    assert [p.need.id for p in plan.proposals] == ["need:1"]
    assert plan.unmatched["need:2"] == [("match_reason_capacity", {"count": 1, "total": 1})]
    declined = {"_id": "match:1:1", "need": "need:1", "offer": "offer:1", "keeper": "user:v1", "status": "declined",
                "provider_answer": "declined"}
    again = rules.plan([need_view(1)], [offer], rules.Record.of([declined]))
    assert not again.proposals and again.unmatched["need:1"] == [("match_reason_tried", {"count": 1})]
    # An accepted match holds its place until the help is over (its task done): then the offer is free again.
    helped = {"_id": "match:0:1", "need": "need:0", "offer": "offer:1", "keeper": "user:v1", "status": "accepted",
              "provider_answer": "accepted"}
    assert not rules.plan([need_view(2)], [offer], rules.Record.of([helped])).proposals
    assert rules.plan([need_view(2)], [offer], rules.Record.of([helped], frozenset({"match:0:1"}))).proposals


def test_the_score_prefers_near_free_reliable_and_least_used_providers() -> None:
    near, far = offer_view(1), offer_view(2, building="9号楼", grid=None)
    plan = rules.plan([need_view()], [far, near], rules.Record())
    assert [p.offer.id for p in plan.proposals] == ["offer:1", "offer:2"]
    words = {f["factor"]: (f["words"], f["params"]) for f in plan.proposals[0].factors}
    assert words["nearness"] == ("match_factor_building", {"building": "3号楼"})
    assert words["time"] == ("match_factor_time", {"hours": 2.0})  # Monday 19:00-21:00 in common
    assert words["skills"] == ("match_factor_skills", {"skills": "手机支付"})
    twin = offer_view(3, keeper="user:v3")  # the same offer from a provider without a record: 0.5 reliable, unused

    def history(*answers: tuple[str, str]) -> rules.Record:
        return rules.Record.of([{"_id": f"match:x{i}:9", "need": f"need:x{i}", "offer": "offer:9", "keeper": "user:v1",
                                 "status": status, "provider_answer": answer}
                                for i, (status, answer) in enumerate(answers)])

    # Half their proposals accepted (as reliable as a newcomer), two needs taken on: the least used goes first.
    used = history(("accepted", "accepted"), ("accepted", "accepted"), ("declined", "declined"),
                   ("declined", "declined"))
    assert [p.offer.id for p in rules.plan([need_view()], [offer_view(1), twin], used).proposals] == [
        "offer:3", "offer:1"]
    # Said yes to every proposal, none taken on yet (the needs' side still to answer): the reliable goes first.
    reliable = history(("proposed", "accepted"), ("proposed", "accepted"))
    assert [p.offer.id for p in rules.plan([need_view()], [twin, offer_view(1)], reliable).proposals] == [
        "offer:1", "offer:3"]


@pytest.mark.parametrize(("hours", "key"), [
    ([], "match_hours_missing"),
    ([{"day": 7, "start": "09:00", "end": "10:00"}], "match_hours_day"),
    ([{"day": 1, "start": "25:00", "end": "26:00"}], "match_hours_time"),
    ([{"day": 1, "start": "10:00", "end": "09:00"}], "match_hours_order"),
    ([{"day": 1, "start": "10:00", "end": "10:00"}], "match_hours_order"),
    ([{"day": 1, "start": "09:00", "end": "12:00"}, {"day": 1, "start": "11:00", "end": "13:00"}],
     "match_hours_overlap"),
    ([{"day": True, "start": "09:00", "end": "10:00"}], "match_hours_day"),
    (["09:00"], "match_hours_shape"),
    ([{"day": 0, "start": "09:00", "end": "10:00"}] * 29, "match_hours_too_many"),
])
def test_impossible_hours_are_named(hours: list, key: str) -> None:
    assert [k for k, _ in rules.hours_problems(hours)] == [key]
    assert rules.hours_problems([{"day": 6, "start": "00:00", "end": "24:00"}]) == []


def test_the_matcher_reads_no_protected_field_and_its_kinds_cover_every_need() -> None:
    need_fields = DOC_TYPES["need"].fields
    for name in rules.NEED_FIELDS_USED:
        assert name in ("_id", "community", "grid") or need_fields[name].effective_tier not in PROTECTED_TIERS
    assert DOC_TYPES["household"].fields["building"].effective_tier not in PROTECTED_TIERS
    # It reads nothing but those: a need holding only them is enough.
    need = {"_id": "need:1", "community": C1, "grid": G1, "household": "household:h", "category": "shopping",
            "description": "买菜", "created_at": NOW.isoformat()}
    assert rules.need_view(need, "3号楼").hours == rules.WHOLE_WEEK
    assert set(COMMON_NEEDS) <= set(HELP_KINDS)
    # What a volunteer's match document shows of the need: nothing protected, no address or name field.
    match_fields = DOC_TYPES["match"].fields
    assert not DOC_TYPES["match"].fields_in(*PROTECTED_TIERS)
    assert not {"address", "resident_name", "description", "phone"} & set(match_fields)


# ---------------------------------------------------------------- the pages, on the small street

HOUSEHOLD, RESIDENT = "household:c1-g01-0002", "resident:c1-g01-0002-1"


@pytest.fixture
def street(loaded: Couch) -> Couch:
    """The small street with a resident account, a second volunteer in grid 1, an organisation and an open need."""
    password_hash = hashed(PASSWORD)
    for doc in (accounts.make_user("jumin1", "居民甲", [Role.RESIDENT], STREET, password_hash, resident=RESIDENT),
                accounts.make_user("volunteer2", "钱志愿", [Role.VOLUNTEER], STREET, password_hash,
                                   communities=[C1], grids=[G1])):
        loaded.accounts.save(doc)
    loaded.main.save({**loaded.main.get(HOUSEHOLD), "building": "3号楼"})
    need = {"_id": "need:n1", "type": "need", "street": STREET, "community": C1, "grid": G1,
            "household": HOUSEHOLD, "resident": RESIDENT, "category": "shopping",
            "description": "每周帮忙买菜，要会手机支付", "status": "open", "created_by": "user:jumin1",
            "created_at": NOW.isoformat()}
    validate(need)
    loaded.main.save(need)
    return loaded


def offer(client: TestClient, **fields: str) -> object:
    values = {"title": "下班后帮忙买菜", "help_kind": "shopping", "languages": "putonghua", "capacity": "2",
              "day_1": "0", "start_1": "18:00", "end_1": "21:00", "building": "3号楼", "skills": "手机支付", **fields}
    return post_form(client, "/offers", values)


def docs_of(couch: Couch, type_name: str) -> list[dict]:
    return [r["doc"] for r in couch.main.all(startkey=f"{type_name}:", endkey=f"{type_name}:\ufff0",
                                                include_docs=True, as_list=True)]


def run_matcher(client: TestClient, username: str = "worker1") -> str:
    login(client, username)
    answer = post_form(client, "/matching", {})
    assert answer.status_code == 200
    logout(client)
    return answer.text


def test_offer_run_both_accept_and_the_accepted_match_survives_re_running(street: Couch,
                                                                          client: TestClient) -> None:
    login(client, "volunteer1")
    assert offer(client).status_code == 303
    logout(client)
    login(client, "volunteer2")
    assert offer(client, building="", skills="").status_code == 303
    logout(client)
    ran = run_matcher(client)
    assert "新推荐 2 项" in ran
    matches = {m["keeper"]: m for m in docs_of(street, "match")}
    first = matches["user:volunteer1"]
    assert first["status"] == "proposed" and [f["factor"] for f in first["factors"]] == [f.name for f in
                                                                                        rules.FACTORS]
    assert first["score"] > matches["user:volunteer2"]["score"]  # same building, a skill the need names
    # The volunteer sees the proposal with its factors in plain words, and not the resident's name or address.
    login(client, "volunteer1")
    page = client.get("/matches").text
    assert "同一栋楼（3号楼），离得近" in page and "有相关特长：手机支付" in page and "周一 18:00–21:00" in page
    assert "居民12" not in page and "c1-g01路2号" not in page
    assert post_form(client, f"/matches/{first['_id'][6:]}/accept", {}).status_code == 303
    logout(client)
    # The resident accepts on their own page (sees their name there), English too.
    login(client, "jumin1")
    post_form(client, "/lang", {"lang": "en"})
    page = client.get("/matches").text
    assert "居民12" in page and "Same building (3号楼): close by" in page and "Mon 18:00–21:00" in page
    assert post_form(client, f"/matches/{first['_id'][6:]}/accept", {}).status_code == 303
    post_form(client, "/lang", {"lang": "zh"})
    logout(client)
    accepted = street.main.get(first["_id"])
    need = street.main.get("need:n1")
    task = street.main.get(accepted["task"])
    assert accepted["status"] == "accepted" and need["status"] == "matched" and need["match"] == first["_id"]
    assert (task["assigned_to"], task["status"], task["need"], task["address"]) == (
        "user:volunteer1", "accepted", "need:n1", "c1-g01路2号")
    other = street.main.get(matches["user:volunteer2"]["_id"])
    assert other["status"] == "withdrawn"  # told, not silently dropped
    # Re-running the matcher leaves the accepted match as it was, and proposes nothing more for the need.
    login(client, "volunteer2")
    assert offer(client, title="周末买菜").status_code == 303
    logout(client)
    run_matcher(client)
    assert street.main.get(first["_id"])["_rev"] == accepted["_rev"]
    assert len(docs_of(street, "match")) == 2


def test_bad_answers_and_impossible_offers_are_refused_and_change_nothing(street: Couch, client: TestClient) -> None:
    login(client, "volunteer1")
    before = len(docs_of(street, "offer"))
    bad = offer(client, start_1="21:00", end_1="18:00")
    assert bad.status_code == 400 and "结束（18:00）要晚于开始（21:00）" in bad.text
    bad = offer(client, day_1="9", capacity="abc", languages="klingon")
    assert bad.status_code == 400 and "星期不对" in bad.text and "1 到 20" in bad.text
    assert "至少选择一种语言" in bad.text
    assert len(docs_of(street, "offer")) == before
    assert offer(client).status_code == 303
    logout(client)
    run_matcher(client)
    (match,) = docs_of(street, "match")
    key = match["_id"][6:]
    # Meant for someone else: another grid's worker, another volunteer; a forged id: a 404 naming why.
    for username in ("worker3", "volunteer2"):
        login(client, username)
        answer = post_form(client, f"/matches/{key}/accept", {})
        assert answer.status_code == 404 and "不是推荐给您的" in answer.text
        logout(client)
    login(client, "volunteer1")
    assert post_form(client, "/matches/x:y/accept", {}).status_code == 404
    assert post_form(client, f"/matches/{key}/accept", {}).status_code == 303
    rev = street.main.get(match["_id"])["_rev"]
    twice = post_form(client, f"/matches/{key}/decline", {})
    assert twice.status_code == 409 and "已经答复过" in twice.text
    assert street.main.get(match["_id"])["_rev"] == rev
    logout(client)
    # Declined by the need's side: over, and the next run may propose another offer.
    login(client, "worker1")
    assert post_form(client, f"/matches/{key}/decline", {}).status_code == 303
    assert street.main.get(match["_id"])["status"] == "declined"
    closed = post_form(client, f"/matches/{key}/accept", {})
    assert closed.status_code == 409
    logout(client)
    assert get_or_none(street.main, "need:n1")["status"] == "open"


def test_the_secretary_sees_unmatched_needs_with_their_reasons(street: Couch, client: TestClient) -> None:
    login(client, "secretary1")
    page = client.get("/matching")
    assert page.status_code == 200 and 'data-need="need:n1"' in page.text and "本社区还没有任何服务供给" in page.text
    street.main.save({"_id": "organisation:c1-clinic", "type": "organisation", "street": STREET, "community": C1,
                      "name": "社区卫生服务站", "kind": "hospital"})
    made = post_form(client, "/offers", {"organisation": "organisation:c1-clinic", "title": "周三义诊",
                                         "help_kind": "free_clinic", "languages": "putonghua", "capacity": "5",
                                         "day_1": "2", "start_1": "09:00", "end_1": "11:00"})
    assert made.status_code == 303
    page = client.get("/matching").text
    assert "1 / 1 项服务不是这类帮助" in page
    logout(client)


def test_a_resident_offers_help_in_their_grid_and_sees_only_their_own_offer(street: Couch,
                                                                          client: TestClient) -> None:
    login(client, "volunteer1")
    assert offer(client, title="志愿者的服务").status_code == 303
    logout(client)
    login(client, "jumin1")
    assert offer(client, title="退休教师辅导作业", help_kind="tutoring").status_code == 303
    (mine,) = [o for o in docs_of(street, "offer") if o["keeper"] == "user:jumin1"]
    assert (mine["grid"], mine["provider"], mine["provider_name"]) == (G1, "user:jumin1", "居民甲")
    page = client.get("/offers").text
    assert "退休教师辅导作业" in page and "志愿者的服务" not in page  # a resident's account names no community
    logout(client)


def test_the_keeper_edits_and_withdraws_an_offer_and_its_waiting_proposals_go_with_it(street: Couch,
                                                                                     client: TestClient) -> None:
    login(client, "volunteer1")
    assert offer(client).status_code == 303
    (made,) = docs_of(street, "offer")
    key = made["_id"][6:]
    assert f'/offers/{key}/edit' in client.get("/offers").text
    before = street.main.get(made["_id"])["_rev"]
    bad = post_form(client, f"/offers/{key}/edit", {"title": "", "help_kind": "shopping", "languages": "putonghua",
                                                    "capacity": "99"})
    assert bad.status_code == 400 and "1 到 20" in bad.text and street.main.get(made["_id"])["_rev"] == before
    edited = post_form(client, f"/offers/{key}/edit", {"title": "周二晚上帮忙买菜", "help_kind": "shopping",
                                                       "languages": "putonghua", "capacity": "1", "day_1": "1",
                                                       "start_1": "18:00", "end_1": "20:00"})
    assert edited.status_code == 303 and edited.headers["location"] == "/offers?done=updated"
    now = street.main.get(made["_id"])
    assert (now["title"], now["capacity"], now["hours"], now["keeper"], now["grid"], now["created_at"]) == (
        "周二晚上帮忙买菜", 1, [{"day": 1, "start": "18:00", "end": "20:00"}], "user:volunteer1", G1,
        made["created_at"]) and "building" not in now
    logout(client)
    login(client, "volunteer2")  # not theirs: as if there were no such offer, nothing changed
    assert client.get(f"/offers/{key}/edit").status_code == 404
    assert post_form(client, f"/offers/{key}/withdraw", {}).status_code == 404
    logout(client)
    run_matcher(client)
    (proposal,) = docs_of(street, "match")
    assert proposal["status"] == "proposed"
    login(client, "volunteer1")
    assert post_form(client, f"/offers/{key}/withdraw", {}).headers["location"] == "/offers?done=withdrawn"
    assert street.main.get(made["_id"])["status"] == "withdrawn"
    assert street.main.get(proposal["_id"])["status"] == "withdrawn"  # the resident sees it withdrawn, not gone
    assert client.get(f"/offers/{key}/edit").status_code == 409  # a withdrawn offer is not edited
    logout(client)


def test_the_keeper_marks_an_organisations_accepted_match_done_and_the_need_is_done(street: Couch,
                                                                                     client: TestClient) -> None:
    street.main.save({"_id": "organisation:c1-shop", "type": "organisation", "street": STREET, "community": C1,
                      "name": "社区超市", "kind": "firm"})
    login(client, "secretary1")
    assert offer(client, organisation="organisation:c1-shop", title="超市送菜上门").status_code == 303
    logout(client)
    run_matcher(client)
    (match,) = docs_of(street, "match")
    key = match["_id"][6:]
    login(client, "secretary1")
    early = post_form(client, f"/matches/{key}/done", {})  # not accepted yet: refused by name, nothing changes
    assert early.status_code == 409 and "只有已成功" in early.text
    assert post_form(client, f"/matches/{key}/accept", {}).status_code == 303
    logout(client)
    login(client, "jumin1")
    assert post_form(client, f"/matches/{key}/accept", {}).status_code == 303
    assert post_form(client, f"/matches/{key}/done", {}).status_code == 404  # the need's side does not say done
    logout(client)
    login(client, "secretary1")
    assert 'action="/matches/' + key + '/done"' in client.get("/matches").text
    assert post_form(client, f"/matches/{key}/done", {}).headers["location"] == "/matches?done=given"
    assert street.main.get(match["_id"])["status"] == "done" and street.main.get("need:n1")["status"] == "done"
    twice = post_form(client, f"/matches/{key}/done", {})
    assert twice.status_code == 409
    logout(client)
