"""The audit report over the filing log (plan §5.1: use of resident data audited regularly, anomalies traced).

Per period: who opened whose protected data how often, and three patterns worth a
person's second look:
- outside assignment: a worker opening residents outside their grids (a secretary: outside their communities);
- night: openings between 22:00 and 06:00 local time;
- many records: one person opening more than MANY_RESIDENTS_A_DAY different residents in one day.
A finding is a lead for the secretary, not a verdict: the report names the entries.

Each report also publishes the filing log's head as anchored outside the database
(server/security/filing_anchor.py: entry, hash, signature): whoever keeps a copy can later
check that the log still reaches it (`linli audit verify --head`), which catches a log cut
short even by someone who could roll back both the database and the data folder.

Keys handed to phones are filed too (server/security/grants.py): they are not openings, so the report counts
them apart (`keys_issued` per person), as are changes to accounts (server/security/account_changes.py,
`account_changes` per administrator), and `exposure` answers who could open a resident's category offline,
from when to when, whether or not they reported opening it.

An offline report filed by two processes at once (their claims both accepted on two CouchDB nodes: issue 24) is
two entries naming one `report`: counted once, the first; the others counted apart (`reports_filed_again`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from server.security.account_changes import ACCOUNT_ACTIONS
from server.security.filing import NOT_OPENINGS, iter_entries
from server.security.filing_anchor import HeadAnchor
from server.security.grants import KEYS_ISSUED, KEYS_WITHDRAWN, key_item
from server.store.couch import Couch, get_many

NIGHT_STARTS, NIGHT_ENDS = 22, 6
MANY_RESIDENTS_A_DAY = 30


@dataclass(frozen=True)
class Finding:
    actor: str
    kind: str  # outside_assignment | night | many_records
    detail: str
    seqs: tuple[int, ...]


@dataclass
class ActorSummary:
    opens: int = 0
    residents: set[str] = field(default_factory=set)
    fields: Counter[str] = field(default_factory=Counter)
    purposes: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    community: str
    start: dt.date
    end: dt.date
    entries: int = 0
    actors: dict[str, ActorSummary] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    head: dict[str, Any] | None = None  # the anchored head when the report was made: {seq, hash, signature, at}
    keys_issued: Counter[str] = field(default_factory=Counter)  # person → keys their phones were given
    account_changes: Counter[str] = field(default_factory=Counter)  # administrator → accounts they changed
    reports_filed_again: int = 0  # entries of an offline report another entry filed already (not counted again)


@dataclass(frozen=True)
class Exposure:
    """One phone that held a key of a resident: from `start` until `end` (None: it still holds it)."""

    actor: str
    phone: str
    tier: str
    start: str
    end: str | None


def exposure(entries: Iterable[dict[str, Any]], resident: str) -> list[Exposure]:
    """Who could open this resident's protected categories offline, on which phone, from when to when (the
    filing log's keys_issued / keys_withdrawn entries, in log order). A re-issue while held (a new key
    version) continues the same span."""
    held: dict[tuple[str, str, str], str] = {}
    spans: list[Exposure] = []
    for entry in entries:
        if entry.get("action") not in (KEYS_ISSUED, KEYS_WITHDRAWN):
            continue
        for tier in entry.get("fields", []):
            if key_item(resident, tier) not in entry.get("keys", []):
                continue
            span = (entry["actor"], entry["target"], tier)
            if entry["action"] == KEYS_ISSUED:
                held.setdefault(span, entry["at"])
            elif span in held:
                spans.append(Exposure(*span, held.pop(span), entry["at"]))
    spans += [Exposure(*span, start, None) for span, start in held.items()]
    return sorted(spans, key=lambda e: (e.start, e.actor))


def exposure_of(couch: Couch, community: str, resident: str) -> list[Exposure]:
    return exposure(iter_entries(couch, community), resident)


def build(community: str, entries: Iterable[dict[str, Any]], residents: dict[str, dict[str, Any]],
          users: dict[str, dict[str, Any]], start: dt.date, end: dt.date, tz: ZoneInfo) -> Report:
    """The report for entries whose local date lies in [start, end]; pure, for tests and for the command."""
    report = Report(community, start, end)
    outside: dict[str, list[int]] = defaultdict(list)
    night: dict[str, list[int]] = defaultdict(list)
    per_day: dict[tuple[str, dt.date], dict[str, int]] = defaultdict(dict)
    filed_reports: set[str] = set()
    for entry in entries:
        at = dt.datetime.fromisoformat(entry["at"]).astimezone(tz)
        if not start <= at.date() <= end:
            continue
        if entry.get("report") in filed_reports:
            report.reports_filed_again += 1
            continue
        if entry.get("report"):
            filed_reports.add(entry["report"])
        actor = entry["actor"]
        if entry.get("action") in (KEYS_ISSUED, KEYS_WITHDRAWN):
            if entry["action"] == KEYS_ISSUED:
                report.keys_issued[actor] += len(entry.get("keys", []))
            continue
        if entry.get("action") in ACCOUNT_ACTIONS:  # not an opening of anyone's data: counted apart
            report.account_changes[actor] += 1
            continue
        if entry.get("action") in NOT_OPENINGS:  # a vote result, a month's figures, moderation: not openings
            continue
        report.entries += 1
        summary = report.actors.setdefault(actor, ActorSummary())
        summary.opens += 1
        summary.residents.add(entry["target"])
        summary.fields.update(entry.get("fields", []))
        summary.purposes[entry.get("purpose", "")] += 1
        if not _assigned(users.get(actor, {}), residents.get(entry["target"], {}), entry["target"]):
            outside[actor].append(entry["seq"])
        if at.hour >= NIGHT_STARTS or at.hour < NIGHT_ENDS:
            night[actor].append(entry["seq"])
        per_day[(actor, at.date())].setdefault(entry["target"], entry["seq"])
    for actor, seqs in outside.items():
        report.findings.append(Finding(actor, "outside_assignment", f"{len(seqs)} openings outside their assignment",
                                       tuple(seqs)))
    for actor, seqs in night.items():
        report.findings.append(Finding(actor, "night", f"{len(seqs)} openings between "
                                       f"{NIGHT_STARTS}:00 and {NIGHT_ENDS:02d}:00", tuple(seqs)))
    for (actor, day), targets in sorted(per_day.items()):
        if len(targets) > MANY_RESIDENTS_A_DAY:
            report.findings.append(Finding(actor, "many_records", f"{len(targets)} different residents on {day}",
                                           tuple(sorted(targets.values()))))
    return report


def _assigned(user: dict[str, Any], resident: dict[str, Any], target: str) -> bool:
    if user.get("resident") == target:
        return True
    if "secretary" in user.get("roles", []) and resident.get("community") in user.get("communities", []):
        return True
    return "grid_worker" in user.get("roles", []) and resident.get("grid") in user.get("grids", [])


def for_community(couch: Couch, anchor: HeadAnchor, community: str, start: dt.date, end: dt.date,
                  tz: ZoneInfo) -> Report:
    entries = list(iter_entries(couch, community))
    residents = get_many(couch.main, {e["target"] for e in entries})
    users = get_many(couch.accounts, {e["actor"] for e in entries})
    report = build(community, entries, residents, users, start, end, tz)
    report.head = anchor.heads().get(community)
    return report


def render_exposure(resident: str, spans: list[Exposure]) -> str:
    lines = [f"Keys of {resident} on phones: {len(spans)}"]
    lines += [f"  {e.tier:<8} {e.actor:<24} {e.phone:<36} {e.start} → {e.end or 'still held'}" for e in spans]
    return "\n".join(lines)


def render_text(report: Report) -> str:
    people = len(report.actors)
    lines = [f"Audit report {report.community}, {report.start} to {report.end}: {report.entries} openings "
             f"by {people} {'person' if people == 1 else 'people'}"]
    for actor, s in sorted(report.actors.items(), key=lambda kv: -kv[1].opens):
        purposes = ", ".join(f"{p or '-'} ×{n}" for p, n in s.purposes.most_common(3))
        purposes += ", …" if len(s.purposes) > 3 else ""
        lines.append(f"  {actor:<24} {s.opens:>5} openings, {len(s.residents):>4} residents; purposes: {purposes}")
    for actor, keys in sorted(report.keys_issued.items()):
        lines.append(f"  {actor:<24} {keys:>5} keys handed to their phones")
    for actor, changes in sorted(report.account_changes.items()):
        lines.append(f"  {actor:<24} {changes:>5} account changes")
    if report.reports_filed_again:
        lines.append(f"  {report.reports_filed_again} offline report(s) filed again by a second process: counted once")
    lines.append(f"Findings: {len(report.findings)}" if report.findings else "Findings: none")
    for f in report.findings:
        shown = ", ".join(map(str, f.seqs[:10])) + (" …" if len(f.seqs) > 10 else "")
        lines.append(f"  [{f.kind}] {f.actor}: {f.detail} (entries {shown})")
    if report.head:
        h = report.head
        lines += [f"Filing-log head: entry {h['seq']}, hash {h['hash']}, signature {h['signature']}",
                  f"  (keep a copy; later, `linli audit verify --head {report.community}:{h['seq']}:{h['hash']}` "
                  "checks that the log still reaches it)"]
    return "\n".join(lines)
