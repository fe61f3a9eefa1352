"""The end-of-run scans of what servers printed (tests/log_scan.py), on lines made up here: the run-wide checks in
conftest.pytest_sessionfinish are only as good as these."""

from __future__ import annotations

from .log_scan import leaks, tracebacks

UVICORN_500 = """INFO:     127.0.0.1:5050 - "GET /alerts HTTP/1.1" 500 Internal Server Error
ERROR:    Exception in ASGI application
Traceback (most recent call last):
  File "/srv/linli/server/web/field_pages.py", line 88, in alerts_page
    rows = visible_alerts(docs)

  File "/srv/linli/server/web/field_pages.py", line 51, in visible_alerts
    return sorted(docs, key=order)
TypeError: '<' not supported between instances of 'str' and 'NoneType'
INFO:     127.0.0.1:5050 - "GET / HTTP/1.1" 200 OK""".splitlines()


def test_a_traceback_is_found_whole_and_ends_at_its_exception() -> None:
    (block,) = tracebacks(UVICORN_500)
    assert block.startswith("Traceback (most recent call last):") and "visible_alerts(docs)" in block
    assert block.endswith("TypeError: '<' not supported between instances of 'str' and 'NoneType'")


def test_a_server_that_printed_no_traceback_passes_and_two_are_two() -> None:
    assert tracebacks([line for line in UVICORN_500 if "Traceback" not in line]) == []
    assert len(tracebacks([*UVICORN_500, *UVICORN_500])) == 2


def test_a_protected_value_is_found_in_any_line_that_holds_it() -> None:
    lines = ["GET /households/h1 200", "note=13800138000 saved"]
    assert leaks(lines, {"13800138000", "not-in-any-line"}) == [("13800138000", "note=13800138000 saved")]
