"""The models and stage text the pipeline tests share (each test file adds its own stages).

T2I makes images, I2V animates one image into a video, V2V extends a video: the chain
stills → clips → longer that the pipeline tests run on the simulator; and the wait, for the
URL-refresh tests, until the simulator has expired a run's file URLs.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"
V2V = "blackforestlabs/flux-3/extend-video/draft"

# a stills stage's sweep: a cat and a dog, each 1 or 2 images (at most 4 files)
RAIN_SWEEP = """\
    sweep:
      - prompt: "A {animal} in the rain"
        vars: {animal: [cat, dog]}
        sequential_image_generation: auto
        max_images: 2
"""

# a clip of 5 s per still, its prompt read from the parent
CLIPS = f"""\
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera pulls back"
        duration: "5"
"""

# a longer clip from each clip's first file, its prompt read two stages up
LONGER = f"""\
  longer:
    model: {V2V}
    jobs:
      - video_url: {{from: clips, first: true}}
        prompt: "{{stills.prompt}} and it goes on"
"""


def urls_of(state_db: Path) -> list[str]:
    """Every file URL a run directory's state file keeps."""
    with sqlite3.connect(state_db) as db:
        return [url for (url,) in db.execute("SELECT url FROM files")]


def wait_until_dead(urls: list[str]) -> None:
    """Wait (at most 10 s) until the simulator has expired every one of `urls`."""
    deadline = time.monotonic() + 10
    while any(_alive(u) for u in urls):
        assert time.monotonic() < deadline, "the simulator never expired the URLs"
        time.sleep(0.05)


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return False
