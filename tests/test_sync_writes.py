"""What a phone may store through the sync gateway (sync/writes.py), one rule per test, on plain documents: the
checks run in the process, so they also kill the module's mutants (tests/mutation/). The same rules end to end,
through `linli serve` and real PouchDB phones: test_sync_security.py, test_web_hardening.py,
test_ciphertext_on_write.py."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from crypto import envelope
from server.domain import timebank
from server.domain.access import Principal, door_answer_id
from server.domain.declaration import Role
from sync import writes

from .street import TINY_PNG

NOW = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
AT = "2026-11-24T09:30:00+08:00"
G1, G2 = "grid:c1-g1", "grid:c1-g2"
WORKER = Principal("user:wangge01", frozenset({Role.GRID_WORKER}), "street:s1", frozenset({"community:c1"}),
                   frozenset({G1}))
PLACE = {"street": "street:s1", "community": "community:c1"}
REFS = {**{g: {"_id": g, "type": "grid", "grid": g, **PLACE} for g in (G1, G2)},
        **{f"household:{g}-h1": {"_id": f"household:{g}-h1", "type": "household", "grid": g, "address": "幸福路1号",
                                 "member_count": 1, **PLACE} for g in (G1, G2)}}
VISIT = {"_id": "visit:g1-h1-w1", "type": "visit", "grid": G1, "household": f"household:{G1}-h1", "kind": "routine",
         "visited_at": AT, "created_by": WORKER.user_id, "created_at": AT, **PLACE}
STORED = {**VISIT, "_rev": "1-abc"}
PNG = base64.b64encode(TINY_PNG).decode()


RESIDENT = {"_id": "resident:g1-h1-1", "type": "resident", "grid": G1, "household": f"household:{G1}-h1",
            "name": "居民", "gender": "female", "birth_date": "1950-01-01", **PLACE}
TASK = {"_id": "task:g1-t1", "type": "task", "resident": RESIDENT["_id"], "grid": G1,
        "household": RESIDENT["household"], "assigned_to": WORKER.user_id, **PLACE}
CLAIM = {"_id": timebank.claim_id(TASK["_id"]), "type": "claim", "task": TASK["_id"], "resident": RESIDENT["_id"],
         "household": RESIDENT["household"], "grid": G1, "minutes": 60, "status": "claimed",
         "created_by": WORKER.user_id, "created_at": AT, **PLACE}
SAMPLE = {"_id": "survey_sample:c1:2026-11", "type": "survey_sample", "month": "2026-11",
          "households": [{"household": RESIDENT["household"]}], **PLACE}
ANSWER = {"_id": door_answer_id(REFS[RESIDENT["household"]], "2026-11"), "type": "survey_response",
          "household": RESIDENT["household"], "month": "2026-11", "overall": 5, "consent": True, "channel": "door",
          "created_by": WORKER.user_id, "created_at": AT, **PLACE}
MATTER = {"_id": "matter:m1", "type": "matter", "status": "closed", **PLACE}
BALLOT = {"_id": f"ballot:m1:{RESIDENT['household']}", "type": "ballot", "grid": G1, "matter": MATTER["_id"],
          "voter": RESIDENT["household"], "household": RESIDENT["household"], "choice": "yes", "channel": "door",
          "assisted_by": WORKER.user_id, "consent": True, "receipt": "ABCD-EFGH-IJKL", "created_by": WORKER.user_id,
          "created_at": AT, **PLACE}
WORLD = {**REFS, **{d["_id"]: d for d in (RESIDENT, TASK, SAMPLE, MATTER)},
         "community:c1": {"_id": "community:c1", "type": "community", **PLACE}}


def refused(doc: Any, current: dict[str, Any] | None = None, new_edits: bool = True) -> str | None:
    refusal = writes.refusal(WORKER, doc, current, new_edits, REFS, NOW)
    return refusal.reason if refusal else None


def photo(**changes: Any) -> dict[str, Any]:
    return {"content_type": "image/png", "data": PNG, **changes}


def test_a_grid_worker_may_store_a_visit_in_their_grid_and_not_in_another() -> None:
    assert refused(VISIT) is None
    elsewhere = {**VISIT, "grid": G2, "household": f"household:{G2}-h1"}
    assert refused(elsewhere) == "your role may not write this visit here"


@pytest.mark.parametrize("doc, reason", [
    ([VISIT], "each document must be a JSON object"),
    ({**VISIT, "_local_seq": 3}, "unknown special field(s) _local_seq"),
    ({**VISIT, "_local_seq": 3, "_conflicts": []}, "unknown special field(s) _conflicts, _local_seq"),
    ({**VISIT, "_rev": "0-abc"}, "_rev must look like \"<n>-<hex>\""),
    ({**VISIT, "_rev": "1-xyz"}, "_rev must look like \"<n>-<hex>\""),
    ({**VISIT, "_rev": 1}, "_rev must look like \"<n>-<hex>\""),
    ({**VISIT, "_deleted": "yes"}, "_deleted must be true or false"),
    ({**VISIT, "type": "user"}, "'user' is not a document type phones may replicate"),
    ({**VISIT, "type": "no_such_type"}, "'no_such_type' is not a document type phones may replicate"),
    ({**VISIT, "type": 7}, "7 is not a document type phones may replicate"),
    ({k: v for k, v in VISIT.items() if k != "type"}, "None is not a document type phones may replicate"),
])
def test_the_protocols_fields_and_the_type_are_checked_first(doc: Any, reason: str) -> None:
    assert refused(doc) == reason


def test_replication_without_new_edits_needs_a_rev_on_every_document() -> None:
    assert refused(VISIT, new_edits=False) == "new_edits=false needs a _rev on every document"
    assert refused({**VISIT, "_rev": "2-bb", "_revisions": {"start": 2, "ids": ["bb", "aa"]}}, new_edits=False) is None


@pytest.mark.parametrize("revisions", [
    {"start": 2, "ids": ["cc", "aa"]},  # not the _rev's
    {"start": 1, "ids": ["bb", "aa"]},  # starts before its own length
    {"start": 2, "ids": []},
    {"start": True, "ids": ["bb", "aa"]},
    {"start": "2", "ids": ["bb", "aa"]},
    {"start": 2, "ids": ["bb", "not-hex"]},
    {"start": 2, "ids": "bb"},
    ["bb", "aa"],
])
def test_a_revision_history_must_match_the_rev_it_comes_with(revisions: Any) -> None:
    assert refused({**VISIT, "_rev": "2-bb", "_revisions": revisions}) == \
        "_revisions must be {start, ids} matching _rev"


def test_a_revision_history_without_a_rev_is_checked_on_its_own() -> None:
    assert refused({**VISIT, "_revisions": {"start": 2, "ids": ["bb", "aa"]}}) is None
    assert refused({**VISIT, "_revisions": {"start": 1, "ids": ["bb", "aa"]}}) is not None


def test_protected_fields_arrive_as_ciphertext_and_the_reason_names_field_and_tier_never_the_value() -> None:
    reason = refused({**VISIT, "blood_pressure": "130/85"})
    assert reason == "protected fields must arrive encrypted (\"enc:…\"): blood_pressure (core tier: format)"
    resident_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    sealed = envelope.seal_for_key(resident_key, 1, envelope.FieldContext(VISIT["_id"], "blood_pressure", "core"),
                                   "130/85")
    assert refused({**VISIT, "blood_pressure": sealed}) is None


def test_a_protected_value_already_stored_may_stay_as_it_is() -> None:
    """Only a new value must arrive sealed: an edit of other fields sends the stored one back unchanged."""
    stored = {**STORED, "blood_pressure": "enc:legacy"}
    assert refused({**stored, "kind": "care"}, stored) is None
    assert writes.new_protected_values({**stored, "kind": "care"}, stored) == []
    assert writes.new_protected_values({**stored, "blood_pressure": "enc:other"}, stored) == ["blood_pressure"]
    assert writes.new_protected_values({**VISIT, "blood_pressure": None}, None) == []


def test_a_document_against_the_schema_is_refused_field_by_field() -> None:
    refusal = writes.refusal(WORKER, {**VISIT, "kind": "party", "mood": "good"}, None, True, REFS, NOW)
    assert refusal is not None
    assert refusal.reason.startswith("invalid: kind: 'party' is not one of ")  # each field and why, in order
    assert refusal.reason.endswith("; mood: is not a declared field of visit")
    assert [e.field for e in refusal.errors] == ["kind", "mood"]


def test_a_deletion_is_judged_by_the_rights_over_what_is_stored() -> None:
    """Issue 23: a phone may delete only what it may write, never any document it names."""
    deletion = {"_id": VISIT["_id"], "_rev": "1-abc", "_deleted": True}
    assert refused(deletion, STORED) is None
    elsewhere = {**STORED, "grid": G2, "household": f"household:{G2}-h1"}
    assert refused(deletion, elsewhere) == "this document is outside what you may see"
    assert refused(deletion, None) == "there is no such document to delete"


def test_a_volunteer_may_delete_the_visit_a_worker_assigned_to_them() -> None:
    volunteer = Principal("user:zhiyuan01", frozenset({Role.VOLUNTEER}), "street:s1", frozenset({"community:c1"}),
                          frozenset({G1}))
    deletion = {"_id": VISIT["_id"], "_rev": "1-abc", "_deleted": True}
    assert writes.refusal(volunteer, deletion, {**STORED, "assigned_to": volunteer.user_id}, True, REFS, NOW) is None


def test_an_edit_cannot_move_a_document_from_a_grid_one_may_not_write_into_ones_own() -> None:
    """Issue 23: the `moved` check; an edit is judged over the stored document, not as a new one."""
    elsewhere = {**STORED, "grid": G2, "household": f"household:{G2}-h1", "created_by": "user:wangge02"}
    assert refused({**VISIT, "_rev": "1-abc"}, elsewhere) == "this document is outside what you may see"


def test_a_deletion_that_kept_its_placement_still_protects_the_document() -> None:
    """The server's deletions keep the fields that route them (`tombstone`): they are judged as the document was."""
    kept = {**writes.tombstone({"_id": VISIT["_id"], "_rev": "2-def"}, {**STORED, "grid": G2}), "_rev": "2-def"}
    assert refused({**VISIT, "_rev": "2-def"}, kept) == "this document is outside what you may see"


def test_a_bare_tombstone_protects_nothing_and_a_deletion_of_it_deletes_nothing() -> None:
    tombstone = {"_id": VISIT["_id"], "_rev": "2-def", "_deleted": True}
    assert refused(VISIT, tombstone) is None
    assert refused({**tombstone, "_rev": "2-def"}, tombstone) == "there is no such document to delete"


def test_a_deletion_keeps_the_fields_that_route_it_to_the_phones_that_had_the_document() -> None:
    deletion = {"_id": VISIT["_id"], "_rev": "2-def", "_revisions": {"start": 2, "ids": ["def", "abc"]},
                "_deleted": True, "notes": "dropped"}
    assert writes.tombstone(deletion, STORED) == {
        "type": "visit", "street": "street:s1", "community": "community:c1", "grid": G1,
        "created_by": WORKER.user_id, "_id": VISIT["_id"], "_rev": "2-def",
        "_revisions": {"start": 2, "ids": ["def", "abc"]}, "_deleted": True}


def test_a_deletion_is_placed_by_the_document_it_deletes() -> None:
    deletion = {"_id": VISIT["_id"], "_rev": "1-abc", "_deleted": True}
    assert writes.ref_ids(deletion, STORED) == {G1, f"household:{G1}-h1"}
    assert writes.ref_ids(VISIT, None) == {G1, f"household:{G1}-h1"}
    assert writes.ref_ids(deletion, None) == set() and writes.ref_ids([VISIT], None) == set()


def test_a_photo_is_attached_to_the_types_that_carry_photos_as_what_its_bytes_are() -> None:
    assert refused({**VISIT, "_attachments": {"p.png": photo()}}) is None
    household = {**REFS[f"household:{G1}-h1"]}
    assert refused({**household, "_attachments": {"p.png": photo()}}) == "a household carries no attachments"
    assert refused({**VISIT, "_attachments": {"a.png": photo(), "b.png": photo()}}) == \
        "a visit carries at most 1 photo(s)"


@pytest.mark.parametrize("attachments, reason", [
    (["p.png"], "_attachments must be an object"),
    ({"p.svg": photo(content_type="image/svg+xml")},
     "attachment 'p.svg': only image/jpeg, image/png, image/webp photos may be attached, not image/svg+xml"),
    ({"p.png": "data"}, "attachment 'p.png': only image/jpeg, image/png, image/webp photos may be attached, not None"),
    ({"p.png": photo(data=None)}, "attachment 'p.png' must carry base64 data or be a stub"),
    ({"p.png": photo(data="not base64!")}, "attachment 'p.png': data is not valid base64"),
    ({"p.png": photo(content_type="image/jpeg")},
     "attachment 'p.png': its bytes are not the image/jpeg it was sent as"),
    ({"p.png": photo(data=base64.b64encode(b"<svg onload=alert(1)>").decode())},
     "attachment 'p.png': its bytes are not the image/png it was sent as"),
])
def test_an_attachment_that_is_no_photo_of_its_type_is_refused(attachments: Any, reason: str) -> None:
    assert refused({**VISIT, "_attachments": attachments}) == reason


def test_a_photo_larger_than_the_limit_is_refused_before_and_after_decoding() -> None:
    limit = 10 * 1024 * 1024  # a visit's (server/domain/field_rules.py PHOTO_LIMITS)
    too_large = "attachment 'p.png' is larger than 10 MB"
    huge = "A" * ((limit + 3) * 4 // 3 + 8)
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=huge)}}) == too_large
    padded = base64.b64encode(TINY_PNG + b"\0" * (limit + 1 - len(TINY_PNG))).decode()
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=padded)}}) == too_large
    at_limit = base64.b64encode(TINY_PNG + b"\0" * (limit - len(TINY_PNG))).decode()
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=at_limit)}}) is None


def test_a_stub_must_name_a_photo_this_document_holds_now() -> None:
    held = {**STORED, "_attachments": {"p.png": {"content_type": "image/png", "digest": "md5-aaa", "stub": True}}}
    assert refused({**held, "_attachments": {"p.png": photo(data=None, stub=True, digest="md5-aaa")}}, held) is None
    assert refused({**held, "_attachments": {"p.png": photo(data=None, stub=True)}}, held) is None  # digest not said
    for stub, current in [(photo(data=None, stub=True, digest="md5-bbb"), held),  # another document's photo
                          (photo(data=None, stub=True, digest="md5-aaa"), STORED),  # nothing held
                          (photo(data=None, stub=True, digest="md5-aaa"), None)]:
        assert refused({**VISIT, "_attachments": {"p.png": stub}}, current) == \
            "attachment 'p.png' is a stub of nothing this document holds"


def test_a_replicated_branch_is_a_conflict_unless_it_descends_from_the_stored_revision() -> None:
    child = {**VISIT, "_rev": "2-bb", "_revisions": {"start": 2, "ids": ["bb", "abc"]}}
    sibling = {**VISIT, "_rev": "2-cc", "_revisions": {"start": 2, "ids": ["cc", "xyz"]}}
    assert not writes.creates_conflict(child, STORED)
    assert writes.creates_conflict(sibling, STORED)
    assert writes.creates_conflict({**VISIT, "_rev": "1-ee"}, STORED)  # no history: nothing it descends from
    assert not writes.creates_conflict(sibling, None)
    assert not writes.creates_conflict(sibling, {**STORED, "_deleted": True})
    assert not writes.creates_conflict({**VISIT, "_rev": "1-abc"}, STORED)


def test_the_answer_to_a_refused_document_names_it_with_the_reason_and_the_persons_errors() -> None:
    refusal = writes.refusal(WORKER, {**VISIT, "grid": G2, "household": f"household:{G2}-h1"}, None, True, REFS, NOW)
    assert refusal is not None and refusal.answer(VISIT) == {
        "id": VISIT["_id"], "error": "forbidden", "reason": "your role may not write this visit here",
        "errors": [{"field": "(document)", "key": "err_sync_refused", "params": {}}]}
    assert refusal.answer("not a document")["id"] is None
    assert not writes.wrong_code(refusal)


def test_ciphertext_that_does_not_open_is_refused_naming_fields_and_tiers() -> None:
    refusal = writes.ciphertext_refusal({**VISIT, "blood_pressure": "enc:x"}, ["blood_pressure"])
    assert refusal.reason == ("protected fields must hold ciphertext that opens under the resident's key: "
                              "blood_pressure (core tier)")
    assert [(e.field, e.key) for e in refusal.errors] == [("blood_pressure", "err_sync_refused")]


def test_the_people_a_document_names_see_it() -> None:
    task = {"volunteers": ["user:v1", None], "assigned_to": "user:v2", "requester": "user:r1"}
    assert writes.audience_users(task) == {"user:v1", "user:v2", "user:r1"}
    assert writes.audience_users({"volunteers": None}) == set()
    assert writes.audience_users(None) == set()


def person_errors(doc: dict[str, Any], current: dict[str, Any] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    refusal = writes.refusal(WORKER, doc, current, True, WORLD, NOW)
    assert refusal is not None
    return [(e.field, e.key, e.params) for e in refusal.errors]


def test_a_new_claim_refused_by_the_time_banks_rules_tells_the_person_why() -> None:
    assert writes.refusal(WORKER, CLAIM, None, True, WORLD, NOW) is None
    assert person_errors({**CLAIM, "minutes": 9 * 60}) == [("(document)", "tb_minutes_range", {"hours": 8})]
    in_person = {**CLAIM, "in_person_code": "123456", "in_person_consent": True, "in_person_at": AT}
    assert person_errors(in_person) == [("in_person_code", "tb_code_wrong", {})]
    assert writes.wrong_code(writes.refusal(WORKER, in_person, None, True, WORLD, NOW))


def test_a_residents_codes_rest_after_five_wrong_ones_in_a_day_counted_on_the_servers_clock() -> None:
    in_person = {**CLAIM, "in_person_code": "123456", "in_person_consent": True, "in_person_at": AT}
    misses = [{"at": (NOW - dt.timedelta(hours=h)).isoformat()} for h in range(1, 6)]
    lock = {"_id": timebank.ledger_lock_id(RESIDENT["_id"]), "type": "ledger_lock", "code_misses": misses}
    refusal = writes.refusal(WORKER, in_person, None, True, {**WORLD, lock["_id"]: lock}, NOW)
    assert refusal is not None and [(e.field, e.key) for e in refusal.errors] == [("(document)", "tb_code_tries_used")]


def test_a_deletion_of_nothing_is_refused_plainly_whatever_type_it_names() -> None:
    """A deletion is no new claim or survey answer: the time bank's and the survey's reasons are not the phone's."""
    assert person_errors({**CLAIM, "minutes": 9 * 60, "_deleted": True}) == [("(document)", "err_sync_refused", {})]
    assert person_errors({**ANSWER, "consent": False, "_deleted": True}) == [("(document)", "err_sync_refused", {})]


def test_only_a_new_claim_says_the_time_banks_reason_an_edit_or_deletion_is_refused_plainly() -> None:
    stored = {**CLAIM, "_rev": "1-abc", "created_by": "user:someone"}
    assert person_errors({**stored, "minutes": 9 * 60}, stored) == [("(document)", "err_sync_refused", {})]


def test_a_door_survey_answer_refused_tells_the_person_why() -> None:
    assert writes.refusal(WORKER, ANSWER, None, True, WORLD, NOW) is None
    assert person_errors({**ANSWER, "consent": False}) == [("consent", "err_survey_consent", {"month": "2026-11"})]
    stored = {**ANSWER, "_rev": "1-abc"}
    assert person_errors({**stored, "overall": 4}, stored) == [("(document)", "err_sync_refused", {})]


def test_every_protected_field_in_plaintext_is_named() -> None:
    resident = {**RESIDENT, "phone": "13800000000", "id_card": "110101195001010000"}
    assert refused(resident) == ("protected fields must arrive encrypted (\"enc:…\"): phone (contact tier: format), "
                                 "id_card (contact tier: format)")
    refusal = writes.ciphertext_refusal(resident, ["phone", "id_card"])
    assert refusal.reason.endswith(": phone (contact tier), id_card (contact tier)")


def test_each_photo_of_a_document_is_judged_a_held_stub_does_not_vouch_for_the_next() -> None:
    request = {"_id": "service_request:g1-1", "type": "service_request", "grid": G1, "category": "street_lamp",
               "description": "路灯不亮", "status": "received", "source": "offline", "created_by": WORKER.user_id,
               "created_at": AT, **PLACE}
    held = {**request, "_rev": "1-abc", "_attachments": {"a.png": {"content_type": "image/png", "digest": "md5-a"}}}
    two = {"a.png": photo(data=None, stub=True, digest="md5-a"), "b.png": photo(content_type="image/jpeg")}
    assert refused({**held, "_attachments": two}, held) == \
        "attachment 'b.png': its bytes are not the image/jpeg it was sent as"


def test_base64_with_stray_characters_is_refused_not_read_around() -> None:
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=PNG[:8] + "*" + PNG[8:])}}) == \
        "attachment 'p.png': data is not valid base64"


def test_the_size_check_before_decoding_refuses_only_what_must_be_too_large() -> None:
    """At most 2 bytes of padding: data whose decoded size may still be within the limit is decoded and judged."""
    limit = 10 * 1024 * 1024
    just_within = "A" * ((limit + 2) * 4 // 3 + 1)  # decodes to at most limit + 2 bytes: not refused for its size
    assert len(just_within) * 3 // 4 == limit + 2 and len(just_within) * 3 % 4
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=just_within)}}) == \
        "attachment 'p.png': data is not valid base64"
    past = "A" * ((limit + 3) * 4 // 3 + 1)
    assert len(past) * 3 // 4 == limit + 3
    assert refused({**VISIT, "_attachments": {"p.png": photo(data=past)}}) == "attachment 'p.png' is larger than 10 MB"


def ballot_errors(doc: dict[str, Any], current: dict[str, Any] | None, new_edits: bool) -> list[tuple[str, str]]:
    refusal = writes.refusal(WORKER, doc, current, new_edits, WORLD, NOW)
    assert refusal is not None
    return [(e.field, e.key) for e in refusal.errors]


CLOSED = [("matter", "vote_matter_closed")]  # the ballot rule's own reason, as the phone shows it
KEPT = [("(document)", "vote_ballot_kept")]


def test_a_ballot_refused_by_the_ballot_rule_shows_that_rules_reason() -> None:
    assert ballot_errors(BALLOT, None, True) == CLOSED
    assert writes.refusal(WORKER, BALLOT, None, True, WORLD, NOW).reason == "This vote is closed: no more ballots."


def test_a_ballot_made_before_its_vote_opens_is_refused_by_the_servers_clock() -> None:
    opens = NOW + dt.timedelta(days=1)
    matter = {**MATTER, "_id": "matter:m2", "status": "open", "opens_at": opens.isoformat(),
              "closes_at": (opens + dt.timedelta(days=7)).isoformat()}
    ballot = {**BALLOT, "_id": f"ballot:m2:{RESIDENT['household']}", "matter": matter["_id"]}
    refusal = writes.refusal(WORKER, ballot, None, True, {**WORLD, matter["_id"]: matter}, NOW)
    assert refusal is not None and [(e.field, e.key) for e in refusal.errors] == [("matter", "vote_not_yet_open")]


def test_a_door_ballot_synced_after_the_grace_period_is_refused_by_the_servers_clock() -> None:
    """A ballot written at the door before the vote closed is taken until 6 hours after (ballots.DOOR_GRACE)."""
    matter = {**MATTER, "_id": "matter:m3", "status": "open", "opens_at": (NOW - dt.timedelta(days=10)).isoformat(),
              "closes_at": (NOW - dt.timedelta(days=1)).isoformat()}
    ballot = {**BALLOT, "_id": f"ballot:m3:{RESIDENT['household']}", "matter": matter["_id"],
              "created_at": (NOW - dt.timedelta(days=2)).isoformat()}
    refusal = writes.refusal(WORKER, ballot, None, True, {**WORLD, matter["_id"]: matter}, NOW)
    assert refusal is not None and [(e.field, e.key) for e in refusal.errors] == [("matter", "vote_grace_over")]


def test_a_second_ballot_replicated_as_a_branch_of_its_own_is_judged_as_new_never_as_an_edit() -> None:
    """Two phones at one door: the second ballot is kept beside the first (server/domain/ballots.py), so it is
    judged as a ballot of its own; an edit of a stored ballot is refused as one."""
    stored = {**BALLOT, "_rev": "2-aa"}
    branch = {**BALLOT, "_rev": "2-bb", "_revisions": {"start": 2, "ids": ["bb", "cc"]}}
    assert ballot_errors(branch, stored, False) == CLOSED
    assert ballot_errors({**BALLOT, "_rev": "2-aa"}, stored, False) == CLOSED  # the same revision again
    child = {**BALLOT, "_rev": "3-bb", "_revisions": {"start": 3, "ids": ["bb", "aa"]}}
    assert ballot_errors(child, stored, False) == KEPT
    assert ballot_errors(branch, stored, True) == KEPT
    deletion = {**BALLOT, "_rev": "2-bb", "_revisions": {"start": 2, "ids": ["bb", "cc"]}, "_deleted": True}
    refusal = writes.refusal(WORKER, deletion, stored, False, WORLD, NOW)  # judged over what is stored
    assert refusal is not None and refusal.reason.startswith("A ballot is not changed once recorded")
