"""The one declaration: validation errors name each bad field; the JSON export matches."""

from __future__ import annotations

import json

import pytest

from server.domain.declaration import (
    ACCOUNTS_DB,
    DOC_TYPES,
    PROTECTED_TIERS,
    SCOPE_FIELDS,
    Category,
    Role,
    Scope,
    Tier,
    ValidationError,
    export_json,
    id_card_check_char,
    validate,
)

ROUTING = {"street": "street:s1", "community": "community:c1", "grid": "grid:c1-g01"}


def resident(**changes: object) -> dict:
    doc = {"_id": "resident:r1", "type": "resident", **ROUTING, "household": "household:h1",
           "name": "王小明", "gender": "male", "birth_date": "1950-03-04"}
    doc.update(changes)
    return doc


def errors_of(doc: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate(doc)
    return {e.field: e.text() for e in caught.value.errors}  # the English text (errors.FieldError)


def test_a_good_resident_validates() -> None:
    assert validate(resident(phone="10012345678", living_alone=True)).name == "resident"


def test_required_types_are_declared() -> None:
    for name in ("street", "community", "grid", "household", "resident", "user", "visit", "need",
                 "service_request", "alert", "device", "reading", "audit_entry"):
        assert name in DOC_TYPES
    # The six roles, the BLE gateway's account (sync/README.md) and a partner organisation's staff (issue 16).
    assert {r.value for r in Role} == {"admin", "secretary", "grid_worker", "volunteer", "department_staff",
                                       "resident", "gateway", "partner"}


def test_resident_categories_have_their_tiers() -> None:
    fields = DOC_TYPES["resident"].fields
    assert {f.category for f in fields.values()} >= {Category.BASIC, Category.CONTACT, Category.HEALTH,
                                                      Category.FINANCE, Category.SOCIAL}
    assert fields["name"].effective_tier is Tier.BASIC
    assert fields["phone"].effective_tier is Tier.CONTACT
    assert fields["id_card"].effective_tier is Tier.CONTACT
    assert fields["chronic_conditions"].effective_tier is Tier.CORE
    assert fields["minimum_living_allowance"].effective_tier is Tier.CORE
    assert DOC_TYPES["user"].fields["password_hash"].effective_tier is Tier.SECRET


def test_every_type_carries_its_routing_fields() -> None:
    for doc_type in DOC_TYPES.values():
        assert doc_type.routing == SCOPE_FIELDS[doc_type.scope]
        # Only the accounts database (never replicated) may hold installation-wide documents.
        assert doc_type.routing[:1] == ("street",) or (doc_type.scope is Scope.INSTALLATION
                                                      and doc_type.database == ACCOUNTS_DB)
    doc = resident()
    del doc["grid"]
    assert "grid" in errors_of(doc)


def test_unknown_type_is_named() -> None:
    errs = errors_of({"_id": "spaceship:1", "type": "spaceship"})
    assert "unknown document type 'spaceship'" in errs["type"]
    assert "resident" in errs["type"]  # the message lists the known types


def test_non_object_document() -> None:
    assert errors_of(["not", "a", "doc"]) == {"(document)": "must be a JSON object"}


def test_each_bad_field_gets_its_own_error() -> None:
    errs = errors_of(resident(_id="household:wrong", gender="robot", birth_date="1950-13-40", phone="12345",
                              id_card="99010119500304001X", living_alone="yes", household="resident:r2",
                              favourite_colour="blue", name=None))
    assert set(errs) == {"_id", "gender", "birth_date", "phone", "id_card", "living_alone", "household",
                         "favourite_colour", "name"}
    assert "not one of male, female" in errs["gender"]
    assert "check digit" in errs["id_card"]
    assert errs["name"] == "is required"
    assert "not a declared field" in errs["favourite_colour"]
    assert "must be the id of a household" in errs["household"]
    assert errs["living_alone"] == "must be true or false, got str"


def test_id_card_check_digit() -> None:
    first17 = "99010119500304001"
    good = first17 + id_card_check_char(first17)
    assert validate(resident(id_card=good))
    bad = first17 + ("1" if good[-1] != "1" else "2")
    assert "check digit" in errors_of(resident(id_card=bad))["id_card"]


def test_protected_fields_accept_encrypted_envelopes_only_for_protected_tiers() -> None:
    assert validate(resident(phone="enc:AQID", chronic_conditions="enc:AQID"))
    # A basic-tier field is never encrypted, so an envelope there is simply a wrong value.
    assert "is not one of male, female" in errors_of(resident(gender="enc:AQID"))["gender"]


def test_geo_and_lists() -> None:
    request = {"_id": "service_request:1", "type": "service_request", **ROUTING, "category": "street_lamp",
               "description": "路灯不亮", "status": "received", "created_by": "user:u1",
               "created_at": "2025-01-01T08:00:00+08:00", "location": {"lat": 30.5, "lon": 114.3}}
    assert validate(request)
    errs = errors_of({**request, "location": {"lat": 95, "lon": 0}, "status": "lost", "departments": "x"})
    assert set(errs) == {"location", "status", "departments"}


def test_export_is_json_and_mirrors_the_declaration() -> None:
    exported = json.loads(json.dumps(export_json()))
    assert set(exported["types"]) == set(DOC_TYPES)
    phone = exported["types"]["resident"]["fields"]["phone"]
    assert phone == {"kind": "phone", "category": "contact", "tier": "contact", "required": False}
    assert set(exported["protected_tiers"]) == {t.value for t in PROTECTED_TIERS}
    assert exported["types"]["user"]["database"] == "accounts"
    assert exported["scopes"]["grid"] == ["street", "community", "grid"]
