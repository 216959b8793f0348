"""Gallery thumbnails: a small JPEG per output image, made once, so report.html stays light
(a 300-job sweep of 2048-pixel PNGs would otherwise load hundreds of MB); cards link to the
originals.

Thumbnails live in RUN_DIR/.thumbs/, named by the content hash of their original: a hidden
folder, which Hugging Face `datasets` skips, so `load_dataset("imagefolder", data_dir=RUN_DIR)`
never takes them for data.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from batch_runner.jobs import FileRecord, JobRecord

THUMBS_DIR = ".thumbs"
MAX_SIDE = 320  # twice the largest box a card shows (CARD_SIZE 256 scaled down), for sharpness
QUALITY = 80
# a smaller file is its own thumbnail: not even opened, so tiny outputs (benchmarks' scaled
# images) cost nothing however often the report is written
MIN_BYTES = 16 * 1024


def thumb_name(f: FileRecord) -> str:
    """Named by the file's name and content: a new file under an old name gets a new one."""
    digest = hashlib.sha256(f"{f.file_name}\0{f.sha256}".encode()).hexdigest()
    return f"{THUMBS_DIR}/{digest[:32]}.jpg"


def make_thumbs(
    run_dir: Path, records: Iterable[JobRecord], kinds: Iterable[str]
) -> dict[str, str]:
    """Make the missing thumbnails of these jobs' image files (`kinds`: the file extensions
    that are images); returns file_name → thumbnail path (relative to RUN_DIR) for every image
    that has one. An image already small, or unreadable, keeps its original."""
    return thumbs_of(run_dir, (f for rec in records for f in rec.files), kinds)


def thumbs_of(run_dir: Path, files: Iterable[FileRecord], kinds: Iterable[str]) -> dict[str, str]:
    """`make_thumbs` of these files (the report reads only the files' rows: no job records)."""
    exts = {e.lower() for e in kinds}
    todo = [
        (f.file_name, thumb_name(f))
        for f in files
        if f.sha256 and f.bytes >= MIN_BYTES and f.file_name.rsplit(".", 1)[-1].lower() in exts
    ]
    if not todo:
        return {}
    workers = min(8, os.cpu_count() or 1)  # Pillow decodes without holding the GIL
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        made = list(pool.map(lambda t: _ensure(run_dir, *t), todo))
    return {src: thumb for (src, thumb), ok in zip(todo, made, strict=True) if ok}


def _ensure(run_dir: Path, src: str, thumb: str) -> bool:
    # here, not at the top: a report of small images, videos or audio only never needs Pillow
    # (its import is ~13 ms of every run's CPU)
    from PIL import Image

    out = run_dir / thumb
    if out.exists():
        return True
    original = run_dir / src
    part = out.with_name(f"{out.name}.{os.getpid()}.part")
    try:
        with Image.open(original) as img:
            if max(img.size) <= MAX_SIDE:
                return False  # small already: the original is the thumbnail
            img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a fraction of the size
            img.thumbnail((MAX_SIDE, MAX_SIDE))
            small = img.convert("RGB")
        out.parent.mkdir(exist_ok=True)
        small.save(part, "JPEG", quality=QUALITY, optimize=True)
        if part.stat().st_size >= original.stat().st_size:
            part.unlink()
            return False
        os.replace(part, out)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        with contextlib.suppress(OSError):
            part.unlink()
        return False
    return True
