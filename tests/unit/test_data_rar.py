"""RAR archives go through the same checks (a stored RAR 4 archive is built here: no
RAR writer is free software; reading compressed members needs bsdtar, libarchive-tools)."""

from __future__ import annotations

import stat
import struct
import zlib

import pytest

from gemhub.services.data import archives
from gemhub.services.data.archives import ArchiveError


def rar4(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A RAR 2.9/4 archive of stored (uncompressed) members: (name, data, unix mode)."""
    out = bytearray(b"Rar!\x1a\x07\x00")

    def block(htype: int, flags: int, body: bytes, data: bytes = b"") -> bytes:
        head = struct.pack("<BHH", htype, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(head) & 0xFFFF) + head + data

    out += block(0x73, 0, b"\x00" * 6)
    for name, data, mode in entries:
        raw = name.encode()
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), 0x5A210000, 20, 0x30,
                           len(raw), mode) + raw
        out += block(0x74, 0x8000, body, data)
    out += block(0x7B, 0x4000, b"")
    return bytes(out)


FILE = stat.S_IFREG | 0o644


def test_rar_extracts(tmp_path):
    draft = tmp_path / "draft"
    draft.mkdir()
    archive = tmp_path / "weights.rar"
    archive.write_bytes(rar4([("layer/w1.bin", b"\x01" * 100, FILE), ("README", b"hi", FILE)]))
    assert archives.detect(archive) == "rar"
    done = archives.extract(archive, draft)
    assert (done.folder, done.files, done.bytes) == ("weights", 2, 102)
    assert (draft / "weights" / "layer" / "w1.bin").read_bytes() == b"\x01" * 100


@pytest.mark.parametrize("entries, reason", [
    ([("../evil.txt", b"x", FILE)], "path-escape"),
    ([("/etc/evil", b"x", FILE)], "absolute-path"),
    ([("ln", b"/etc/passwd", stat.S_IFLNK | 0o777)], "link"),
    ([("n" * 70, b"x", FILE)], "bad-name"),
])
def test_bad_rar_is_refused(tmp_path, entries, reason):
    draft = tmp_path / "draft"
    draft.mkdir()
    archive = tmp_path / "bad.rar"
    archive.write_bytes(rar4(entries))
    with pytest.raises(ArchiveError) as e:
        archives.extract(archive, draft)
    assert e.value.reason == reason
    assert list(draft.iterdir()) == []
