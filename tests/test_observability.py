"""Metrics and request ids (issue 20, item 3): `/metrics` in Prometheus' format for a bearer of the metrics token
only, requests counted by route template (not raw path), alerts waiting by age, gateways' silence; every answer
carries its request id, and log lines written while serving it carry the same."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from server.store.config import Settings
from server.store.couch import Couch
from server.web import observability
from server.web.app import create_app
from server.web.observability import REQUEST_ID, JsonFormatter, RequestIdFilter
from tests.street import as_user


def scrape(client: TestClient, token: str) -> dict[str, list]:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def test_metrics_answer_only_the_token_and_count_by_route(demo_loaded: Couch, settings: Settings) -> None:
    client = TestClient(create_app(dataclasses.replace(settings, metrics_token="m" * 32), demo_loaded),
                        follow_redirects=False)
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32}).status_code == 404
    without = TestClient(create_app(settings, demo_loaded))  # no token set: not exposed at all
    assert without.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 404

    now = dt.datetime.now(dt.UTC)
    demo_loaded.main.save({"_id": "alert:waiting", "type": "alert", "community": "community:c1", "status": "raised",
                           "raised_at": (now - dt.timedelta(hours=2)).isoformat()})
    demo_loaded.main.save({"_id": "gateway_health:g1", "type": "gateway_health", "gateway": "gateway:g1",
                           "heartbeat_at": (now - dt.timedelta(minutes=20)).isoformat()})
    as_user(client, "wangge01", "demo-password")
    households = [f"/households/household:c1-g01-{n:04d}" for n in (1, 2, 3)]
    for path in households:
        assert client.get(path).status_code == 200
    client.get("/no/such/page/" + "x" * 40)
    samples = scrape(client, "m" * 32)
    counted = {(s.labels["route"], s.labels["status"]): s.value for s in samples["linli_http_requests"]
               if s.name == "linli_http_requests_total"}
    assert counted[("/households/{household_id}", "200")] >= 3  # one label for every household
    assert not any("household:c1" in route for route, _ in counted)  # never a raw path
    assert ("(no route)", "404") in counted
    waiting = {s.labels["le"]: s.value for s in samples["linli_alerts_unacknowledged"]}
    assert (waiting["3600"], waiting["14400"], waiting["+Inf"]) == (0, 1, 1)  # waiting two hours
    silence = {s.labels["gateway"]: s.value for s in samples["linli_gateway_silence_seconds"]}
    assert 1190 < silence["gateway:g1"] < 1300
    assert [s.value for s in samples["linli_sweep_failures"]] == [0]


def test_every_answer_and_log_line_carries_its_request_id(web: TestClient) -> None:
    mine = web.get("/login", headers={"X-Request-ID": "visit-42"})
    assert mine.headers["x-request-id"] == "visit-42"
    made = web.get("/login", headers={"X-Request-ID": "not a token\n{injected}"})
    assert len(made.headers["x-request-id"]) == 32 and "injected" not in made.headers["x-request-id"]
    assert web.get("/login").headers["x-request-id"] != made.headers["x-request-id"]

    record = logging.LogRecord("linli", logging.WARNING, __file__, 1, "database unreachable for %s", ("/x",), None)
    token = REQUEST_ID.set("visit-42")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "visit-42" and line["message"] == "database unreachable for /x"
    assert line["level"] == "WARNING" and line["logger"] == "linli"


def test_a_slow_answer_is_logged_by_its_route_with_its_request_id(
    web: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    as_user(web, "wangge01", "demo-password")
    caplog.handler.addFilter(RequestIdFilter())  # as the server's own handler: the id of the request being served
    with caplog.at_level(logging.WARNING, logger="linli.web"):
        assert web.get("/login").status_code == 200  # under the limit: nothing
        assert not caplog.records
        monkeypatch.setattr(observability, "SLOW_ANSWER_SECONDS", 0.0)  # every answer is slow now
        web.get("/households/household:c1-g01-0001", headers={"X-Request-ID": "slow-1"})
    [record] = caplog.records
    assert re.fullmatch(r"slow answer: GET /households/\{household_id\} 200 after \d+\.\d s", record.getMessage())
    assert "c1-g01" not in record.getMessage()  # the route template, never the path asked
    assert record.request_id == "slow-1"
