"""Reading SQLite files as an attacker with a copy of them would: every image of every page.

Used by the tests that prove secret ballots keep no voter-choice link in any copy of the data
directory (see ``tests/integration/test_secret_ballot_files.py``). A snapshot may hold several
versions of one page: the database file's, and the images a WAL or a rollback journal keeps of
it. Two versions of a page of voters differ by the voters added in between, two of a page of
ballots by the ballots; when one snapshot holds both kinds of change, they pair up.
"""

from __future__ import annotations

import sqlite3
import struct
from collections import defaultdict
from pathlib import Path

PageImages = dict[int, set[bytes]]


def page_images(files: dict[str, bytes]) -> dict[str, PageImages]:
    """Per database (by base name): page number → every distinct image of that page found in
    the database file, its WAL frames and its rollback journal's records."""
    found: dict[str, PageImages] = defaultdict(lambda: defaultdict(set))
    for name, data in files.items():
        base = name.removesuffix("-wal").removesuffix("-journal")
        pages = found[base]
        if name.endswith("-wal"):
            if len(data) < 32:
                continue
            size = struct.unpack(">I", data[8:12])[0]
            if size < 512:
                continue
            at = 32
            while at + 24 + size <= len(data):
                number = struct.unpack(">I", data[at : at + 4])[0]
                pages[number].add(data[at + 24 : at + 24 + size])
                at += 24 + size
        elif name.endswith("-journal"):
            if len(data) < 28:
                continue
            sector, size = struct.unpack(">II", data[20:28])
            at = sector or 512
            while size and at + 4 + size <= len(data):
                number = struct.unpack(">I", data[at : at + 4])[0]
                if number:
                    pages[number].add(data[at + 4 : at + 4 + size])
                at += 4 + size + 4
        elif len(data) >= 100:
            size = struct.unpack(">H", data[16:18])[0]
            size = 65536 if size == 1 else size
            if size < 512 or size & (size - 1):
                continue  # caught while the header itself was being written
            for number in range(1, len(data) // size + 1):
                pages[number].add(data[(number - 1) * size : number * size])
    return found


def linkable(images: dict[str, PageImages], voters: list[str], ballots: list[bytes]) -> list[str]:
    """Why one snapshot's page images (:func:`page_images`) would pair a voter with a ballot:
    pages naming voters and pages holding ballots both in more than one version. Empty when it
    would not."""
    problems = []
    for base, pages in images.items():
        voter_pages = [
            n
            for n, images in pages.items()
            if len(images) > 1 and any(v.encode() in i for i in images for v in voters)
        ]
        ballot_pages = [
            n
            for n, images in pages.items()
            if len(images) > 1 and any(b in i for i in images for b in ballots)
        ]
        if voter_pages and ballot_pages:
            problems.append(f"{base}: voter pages {voter_pages} and ballot pages {ballot_pages}")
    return problems


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """A copy of every database file, as a backup tool would take it."""
    files = {}
    for path in data_dir.glob("*.sqlite3*"):
        try:
            files[path.name] = path.read_bytes()
        except FileNotFoundError:  # a journal deleted while we looked
            pass
    return files


def merge(*versions: dict[str, PageImages]) -> dict[str, PageImages]:
    """The page images of several snapshots together (e.g. a file before and after a
    transaction: what a copy taken mid-commit, journal and new pages side by side, can hold)."""
    merged: dict[str, PageImages] = defaultdict(lambda: defaultdict(set))
    for version in versions:
        for base, pages in version.items():
            for number, images in pages.items():
                merged[base][number] |= images
    return merged


def _read_private_store(data: bytes | None, path: Path) -> tuple[dict[str, str], set[str]] | None:
    """(who → their state, contribution keys) of one copy of a private store file, read as
    it lies (a journal beside it is not applied), or None when it can't be read."""
    if not data:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            people = {
                f"{item} {who}": str(state)
                for item, who, state in con.execute(
                    "SELECT item, who, batch FROM private_participants"
                )
            }
            keys = {str(k) for (k,) in con.execute("SELECT key FROM private_contributions")}
        finally:
            con.close()
    except sqlite3.Error:
        return None  # caught mid-write: nothing readable, nothing linked
    return people, keys


def pair_links(
    before: dict[str, bytes], after: dict[str, bytes], name: str, scratch: Path
) -> list[tuple[str, str]]:
    """The reconstruction attack on two copies of a private store (``name``, e.g.
    ``private-polls.sqlite3``): the people settled between the copies (absent or waiting in the
    first, past waiting in the second) and the contributions that arrived. When contributions
    arrived and exactly one person settled, that person is linked to them: returned as
    ``(who, contribution key)``. Empty when no such certainty exists."""
    first = _read_private_store(before.get(name), scratch / "before.sqlite3")
    second = _read_private_store(after.get(name), scratch / "after.sqlite3")
    if first is None or second is None:
        return []
    (people_before, keys_before), (people_after, keys_after) = first, second
    arrived = sorted(keys_after - keys_before)
    settled = [
        who
        for who, state in people_after.items()
        if state != "waiting" and people_before.get(who, "waiting") == "waiting"
    ]
    if arrived and len(settled) == 1:
        return [(settled[0], key) for key in arrived]
    return []
