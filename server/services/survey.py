"""The monthly satisfaction survey per community, with published results (plan §4.5: satisfaction surveyed
monthly and published; target 76% → 90%).

One answer per resident per month (the document id says so, so a second answer is a conflict, not a
double count). Results publish only totals per community and month, never who answered what.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pycouchdb.exceptions import Conflict

from server.domain.access import Principal
from server.domain.declaration import validate
from server.domain.errors import FieldError, UserError
from server.store.couch import Couch, docs_of_type

SATISFIED_FROM = 4  # 4 or 5 of 5 counts as satisfied


class SurveyError(UserError):
    def __init__(self, field: str, key: str, **params: str | int) -> None:
        super().__init__([FieldError(field, key, params)])


def month_of(now: dt.datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


def response_id(community: str, month: str, user_id: str) -> str:
    return f"survey_response:{community.split(':', 1)[1]}:{month}:{user_id.split(':', 1)[1]}"


def answer(couch: Couch, p: Principal, resident: dict[str, Any], overall: int, comment: str, now: dt.datetime,
           tz: ZoneInfo) -> dict[str, Any]:
    """A resident's answer for this month in their community."""
    if p.resident != resident["_id"]:
        raise SurveyError("overall", "err_survey_residents_only")
    if not (isinstance(overall, int) and 1 <= overall <= 5):
        raise SurveyError("overall", "err_survey_overall")
    month = month_of(now, tz)
    doc = {"_id": response_id(resident["community"], month, p.user_id), "type": "survey_response",
           "street": resident["street"], "community": resident["community"], "month": month, "overall": overall,
           "created_by": p.user_id, "created_at": now.isoformat(), **({"comment": comment.strip()[:500]}
                                                                       if comment.strip() else {})}
    validate(doc)
    try:
        return couch.main.save(doc)
    except Conflict:
        raise SurveyError("overall", "err_survey_answered", month=month) from None


@dataclass(frozen=True)
class Result:
    community: str
    month: str
    answers: int
    mean: float
    satisfied_share: float


def results(couch: Couch) -> list[Result]:
    """Totals per community and month, newest month first."""
    totals: dict[tuple[str, str], list[int]] = {}
    for doc in docs_of_type(couch.main, "survey_response"):
        totals.setdefault((doc["community"], doc["month"]), []).append(doc["overall"])
    return sorted((Result(c, m, len(v), round(sum(v) / len(v), 2),
                          round(sum(1 for x in v if x >= SATISFIED_FROM) / len(v), 3))
                   for (c, m), v in totals.items()), key=lambda r: (r.month, r.community), reverse=True)
