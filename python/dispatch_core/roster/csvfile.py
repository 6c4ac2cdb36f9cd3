"""The roster CSV: one person or one shift per line, checked whole before anything is sent.

Columns (a header line names them; order free, unknown columns refused):

    kind,id,person_id,name,skills,start,end,role,area

- `kind=person`: `id` is the person_id, `name` a display name, `skills` a `;`-separated
  list of `capability[@valid_from/expiry]`, either bound optional
  (`firearms@2026-01-01/2027-01-01;taser@/2026-06-30;lang_polish`).
- `kind=shift`: `id` is the shift_id, `person_id` whose shift, `start` and `end` the
  window (ISO 8601, UTC when no zone), `role` and `area` free text.

Every problem is reported as `line N: field: what`, N counting the header as line 1. The
checks here are the ones a file can fail on its own: syntax, times, the capability
vocabulary, expiry after valid_from, shift windows, overlapping shifts of one person within
the file and shifts of people the file does not define (unless `known_people` holds them);
the server checks the rest (a shift overlapping one it already holds) when it applies them.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

COLUMNS = ("kind", "id", "person_id", "name", "skills", "start", "end", "role", "area")
MAX_WINDOW_MS = 7 * 24 * 3600 * 1000


@dataclass
class Parsed:
    """The file's commands in file order, (line, method, request without request_id), and
    its problems."""

    commands: list[tuple[int, str, Message]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    def bad_lines(self) -> set[int]:
        return {line for line, _ in self.errors}


def _time_ms(text: str) -> int:
    when = dt.datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _skills(text: str, vocabulary: frozenset[str]) -> tuple[list[pb.Skill], list[str]]:
    skills: list[pb.Skill] = []
    problems: list[str] = []
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, window = item.partition("@")
        if name not in vocabulary:
            problems.append(f"skills: {name!r} is not in the capability vocabulary")
            continue
        if name in seen:
            problems.append(f"skills: {name!r} is listed twice")
        seen.add(name)
        skill = pb.Skill(capability=name)
        start_text, _, end_text = window.partition("/")
        try:
            start = _time_ms(start_text) if start_text else None
            end = _time_ms(end_text) if end_text else None
        except ValueError:
            problems.append(f"skills: {item!r} has a time that is not ISO 8601")
            continue
        if start is not None:
            skill.valid_from.FromMilliseconds(start)
        if end is not None:
            skill.expiry.FromMilliseconds(end)
        if start is not None and end is not None and end <= start:
            problems.append(
                f"skills: {name} expires ({end_text}) before it is valid ({start_text})"
            )
        skills.append(skill)
    return skills, problems


def parse(
    lines: Iterable[str], vocabulary: Iterable[str], known_people: Iterable[str] = ()
) -> Parsed:
    """Parses and checks a roster CSV (see the module docs)."""
    vocab = frozenset(vocabulary)
    out = Parsed()
    reader = csv.DictReader(lines)
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if reader.fieldnames is None or "kind" not in reader.fieldnames or unknown:
        out.errors.append((1, f"header: needs the columns {','.join(COLUMNS)}"))
        return out
    people = set(known_people)
    windows: dict[str, list[tuple[int, int, int]]] = {}
    for row in reader:
        line = reader.line_num
        kind = (row.get("kind") or "").strip()
        ident = (row.get("id") or "").strip()
        problems: list[str] = []
        if not ident:
            problems.append("id: must be set")
        if kind == "person":
            skills, skill_problems = _skills(row.get("skills") or "", vocab)
            problems += skill_problems
            person = pb.Person(person_id=ident, name=(row.get("name") or "").strip(), skills=skills)
            request: Message = pb.UpsertPersonRequest(person=person)
            people.add(ident)
            method = "UpsertPerson"
        elif kind == "shift":
            person_id = (row.get("person_id") or "").strip()
            if person_id not in people:
                problems.append(
                    f"person_id: {person_id!r} is not a person of this file or the server"
                )
            shift = pb.Shift(
                shift_id=ident,
                person_id=person_id,
                role=(row.get("role") or "").strip(),
                area=(row.get("area") or "").strip(),
            )
            try:
                start, end = _time_ms(row.get("start") or ""), _time_ms(row.get("end") or "")
            except ValueError:
                problems.append("start/end: must be ISO 8601 times")
                start = end = 0
            else:
                if end <= start:
                    problems.append("end: must be after start")
                elif end - start > MAX_WINDOW_MS:
                    problems.append("end: is more than 7 days after the start")
                for other_start, other_end, other_line in windows.get(person_id, []):
                    if other_start < end and start < other_end:
                        problems.append(f"start/end: overlaps the shift on line {other_line}")
                        break
                windows.setdefault(person_id, []).append((start, end, line))
                shift.start.FromMilliseconds(start)
                shift.end.FromMilliseconds(end)
            request = pb.UpsertShiftRequest(shift=shift)
            method = "UpsertShift"
        else:
            out.errors.append((line, f"kind: {kind!r} is neither person nor shift"))
            continue
        out.errors += [(line, p) for p in problems]
        out.commands.append((line, method, request))
    return out
