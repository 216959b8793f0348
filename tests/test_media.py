"""The output type of a file from its bytes (sniff), its structure check, its kind and folder."""

from __future__ import annotations

import pytest
from mediafiles import SAMPLES, mp3

from batch_runner.outputs.media import FOLDERS, HEAD, KINDS, check, folder_of, in_memory, sniff

TYPES = sorted(SAMPLES)


def test_every_contract_type_has_a_sample_and_a_kind():
    assert (
        set(TYPES)
        == set(KINDS)
        == {
            *("png", "jpg", "webp", "gif"),
            *("mp4", "webm", "mov"),
            *("wav", "mp3", "flac", "ogg", "m4a"),
        }
    )
    assert set(FOLDERS.values()) == {"images", "videos", "audio"}


@pytest.mark.parametrize("ext", TYPES)
def test_sniffed_from_the_bytes_and_well_formed(ext):
    data = SAMPLES[ext]()
    assert sniff(data[:HEAD]) == ext
    assert check(ext, in_memory(data), len(data)) is None


# FLAC and MP3 carry no overall length: a body cut short there is caught by Content-Length
CUT = [e for e in TYPES if e not in ("flac", "mp3")]


@pytest.mark.parametrize("ext", CUT)
def test_cut_short_is_refused(ext):
    """A body missing its last bytes (with a Content-Length that matched it) fails its check."""
    data = SAMPLES[ext]()[:-5]
    assert sniff(data[:HEAD]) == ext
    assert check(ext, in_memory(data), len(data)) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>",
        b'{"error": "expired"}',
        b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>",
        b"",
        b"GIF90a",
        b"RIFF\x00\x00\x00\x00AVI LIST",
        b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska",  # Matroska, not WebM
        b"\xff\xf1\x50\x80",  # AAC ADTS: layer bits 00 are not MPEG audio layer I-III
    ],
)
def test_bytes_of_no_known_type(data):
    assert sniff(data[:HEAD]) is None


def test_brands_decide_mp4_mov_m4a():
    assert sniff(b"\x00\x00\x00\x18ftypisom") == "mp4"
    assert sniff(b"\x00\x00\x00\x18ftypqt  ") == "mov"
    assert sniff(b"\x00\x00\x00\x18ftypM4A ") == "m4a"


def test_mp3_without_a_tag():
    data = mp3(id3=False)
    assert sniff(data[:HEAD]) == "mp3" and check("mp3", in_memory(data), len(data)) is None


def test_a_riff_size_beyond_the_file_is_refused():
    data = SAMPLES["wav"]()
    grown = data[:4] + (len(data) + 100).to_bytes(4, "little") + data[8:]
    assert "RIFF size" in check("wav", in_memory(grown), len(grown))


def test_folders_by_kind():
    assert [folder_of(e) for e in ("webp", "mov", "m4a")] == ["images", "videos", "audio"]
