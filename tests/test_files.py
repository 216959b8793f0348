"""The one write path: part file beside the final name, then rename (outputs/files.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batch_runner.outputs.files import PartFile, atomic_text, part_path, sniff


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_part_names_sit_beside_the_final_name_and_never_repeat(tmp_path):
    final = tmp_path / "a.png"
    names = {part_path(final) for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith(f"{final}.") and n.endswith(".part") for n in names)


def test_part_file_is_hashed_counted_and_renamed_into_place(tmp_path):
    final = tmp_path / "sub" / "dir" / "a.png"  # folders are created as needed
    part = PartFile(final)
    for piece in (b"abc", b"", b"defg" * 1000):
        part.write(piece)
    assert not final.exists() and Path(part.path).is_file()
    part.commit()
    data = b"abc" + b"defg" * 1000
    assert final.read_bytes() == data and listing(tmp_path) == ["sub/dir/a.png"]
    assert (part.size, part.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_discard_leaves_the_old_file_and_refuses_later_writes(tmp_path):
    final = tmp_path / "a.png"
    final.write_bytes(b"old")
    part = PartFile(final)
    part.write(b"new, half written")
    part.discard()
    assert listing(tmp_path) == ["a.png"] and final.read_bytes() == b"old"
    # a write still queued on a worker thread must not bring the part file back
    with pytest.raises(ValueError):
        part.write(b"late")
    assert listing(tmp_path) == ["a.png"]
    part.discard()  # twice is harmless


def test_commit_without_writes_makes_an_empty_file(tmp_path):
    part = PartFile(tmp_path / "empty.bin")
    part.commit()
    assert (tmp_path / "empty.bin").read_bytes() == b"" and listing(tmp_path) == ["empty.bin"]


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_text_replaces_the_file_whole(tmp_path, durable):
    final = tmp_path / "report.html"
    final.write_text("old")
    with atomic_text(final, durable=durable) as fh:
        fh.write("new ✓\n")
        assert final.read_text() == "old"  # nothing shows before the rename
    assert final.read_text(encoding="utf-8") == "new ✓\n" and listing(tmp_path) == ["report.html"]


def test_atomic_text_failure_keeps_the_old_file_and_no_part(tmp_path):
    final = tmp_path / "metadata.jsonl"
    final.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_text(final) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert final.read_text() == "old\n" and listing(tmp_path) == ["metadata.jsonl"]


def test_atomic_text_newline_is_passed_through(tmp_path):
    final = tmp_path / "x.csv"
    with atomic_text(final, newline="") as fh:
        fh.write("a\r\nb\n")
    assert final.read_bytes() == b"a\r\nb\n"


@pytest.mark.parametrize(
    ("head", "ext"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(25), "png"),
        (b"\xff\xd8\xff\xe0", "jpg"),
        (b"\x00\x00\x00\x18ftypmp42", "mp4"),
        (b"\x1a\x45\xdf\xa3", "webm"),
        (b"GIF89a", None),
        (b"", None),
    ],
)
def test_sniff(head, ext):
    assert sniff(head) == ext
