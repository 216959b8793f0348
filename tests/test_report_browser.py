"""The gallery in a real headless Chromium: images load, the sweep grid has the right shape and
its axis selects swap rows and columns, nothing is fetched from the network, no console errors.

Set BATCH_RUNNER_SCREENSHOT=docs/gallery.png to also save a 1200x800 screenshot of the page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mediafiles
import pytest
from PIL import Image, ImageDraw

from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.report.page import write_report

MODEL = "bytedance/seedream-5/lite/text-to-image"
VIDEO_MODEL = "alibaba/happyhorse-1.1/text-to-video"
AUDIO_MODEL = "acestep-ai/ace-step-1.5/text-to-audio"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SUBJECTS = {"fox": (232, 110, 40), "owl": (150, 120, 90), "lighthouse": (230, 230, 220)}
STYLES = {"ukiyo-e": ((24, 46, 84), (214, 196, 160)), "bauhaus": ((190, 40, 40), (245, 200, 40))}
WAIT_ALL_COMPLETE = "[...document.images].every(i => i.complete)"
BROKEN = "[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)"
SCROLL_ALL = """async () => {
  for (const el of document.querySelectorAll("img")) {
    el.scrollIntoView({block: "center"});
    await new Promise(r => requestAnimationFrame(() => r()));
  }
}"""


def picture(path: Path, size: tuple[int, int], top, bottom, fg) -> None:
    """A small gradient scene with a disc, written as PNG or JPEG by extension."""
    w, h = size
    mask = Image.linear_gradient("L").resize(size)
    img = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)
    draw = ImageDraw.Draw(img)
    r = min(w, h) // 4
    draw.ellipse((w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r), fill=fg)
    draw.rectangle((0, int(h * 0.8), w, h), fill=tuple(c // 2 for c in top))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def build_run_dir(run_dir: Path) -> list[JobRecord]:
    """Write images for a 3x2 sweep, two plain jobs (one with two files) and a failed job."""
    recs: list[JobRecord] = []

    def add(inputs, files, state=JobState.DONE, **kw) -> None:
        i = len(recs) + 1
        frs = []
        for k, (name, size, colors) in enumerate(files, 1):
            picture(run_dir / name, size, *colors)
            frs.append(FileRecord(name, k, "0" * 64, (run_dir / name).stat().st_size))
        recs.append(
            JobRecord(f"{i:016x}", i, MODEL, inputs, state, files=frs, request_ids=[f"r{i}"], **kw)
        )

    for subject, fg in SUBJECTS.items():
        for style, (top, bottom) in STYLES.items():
            ext = "png" if style == "bauhaus" else "jpeg"
            name = f"images/{len(recs) + 1:05d}-{subject} {style}.{ext}"  # a space: quoted src
            prompt = f"A {subject} painted in {style}"
            inputs = {"prompt": prompt, "resolution": "2048x2048 (1:1)", "output_format": ext}
            add(
                inputs,
                [(name, (384, 384), (top, bottom, fg))],
                sweep=0,
                vars={"subject": subject, "style": style},
            )
    wide = {"prompt": "A lighthouse at dusk", "resolution": "2848x1600 (16:9)"}
    add(
        wide,
        [("images/00007-lighthouse.jpg", (480, 270), ((40, 30, 80), (240, 140, 90), "white"))],
        meta={"split": "train"},
    )
    two = [
        (f"images/00008-red-fox-in-snow-{k}.png", (320, 320), ((200, 210, 230), "white", c))
        for k, c in ((1, (200, 80, 30)), (2, (160, 60, 20)))
    ]
    add({"prompt": "A red fox in fresh snow", "seed": 42}, two)
    add(
        {"prompt": "<script>alert(1)</script> a cat"},
        [],
        JobState.FAILED,
        reason="422001 invalid inputs: resolution must be one of 2K, 3K",
    )
    add_model_sweep(run_dir, recs)
    return recs


# a sweep with `model` as an axis: one image, one video and one audio model, two prompts
MODELS = {
    MODEL: ("png", lambda: mediafiles.image("PNG", (96, 96))),
    VIDEO_MODEL: ("mp4", mediafiles.mp4_bytes),
    AUDIO_MODEL: ("wav", lambda: mediafiles.wav(4000)),
}
FOLDER = {"png": "images", "mp4": "videos", "wav": "audio"}


def add_model_sweep(run_dir: Path, recs: list[JobRecord]) -> None:
    for model, (ext, make) in MODELS.items():
        for prompt in ("A calm sea", "A storm"):
            i = len(recs) + 1
            name = f"{FOLDER[ext]}/{i:05d}-{prompt.lower().replace(' ', '-')}.{ext}"
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / name).write_bytes(make())
            f = FileRecord(name, 1, "0" * 64, (run_dir / name).stat().st_size)
            rec = JobRecord(f"{i:016x}", i, model, {"prompt": prompt}, JobState.DONE, files=[f])
            rec.sweep = 1
            recs.append(rec)


def grid_shape(page, sweep: int = 0) -> tuple[int, int, int, list[int]]:
    grid = page.locator(f'table.grid[data-sweep="{sweep}"]')
    cells = grid.locator("td.cell")
    per_cell = [cells.nth(i).locator("img").count() for i in range(cells.count())]
    return (
        grid.locator("th.row-head").count(),
        grid.locator("th.col-head").count(),
        cells.count(),
        per_cell,
    )


def check_model_grid(page) -> None:
    """Rows are the models; each cell holds that model's player: image, video, audio."""
    sweep = page.locator('section[data-sweep="1"]')
    grid = sweep.locator("table.grid")
    assert grid.locator("th.row-head").all_inner_texts() == list(MODELS)
    assert grid.locator("th.col-head").all_inner_texts() == ["A calm sea", "A storm"]
    rows = grid.locator("tbody tr")
    assert [rows.nth(i).locator("img").count() for i in range(3)] == [2, 0, 0]
    video = rows.nth(1).locator("video[controls][preload=metadata]")
    audio = rows.nth(2).locator("audio[controls][preload=metadata]")
    assert (video.count(), audio.count()) == (2, 2)
    assert video.first.get_attribute("src").startswith("videos/")
    # the WAV is decoded by the browser: its length is known once its metadata is loaded
    audio.first.scroll_into_view_if_needed()
    page.wait_for_function(
        "document.querySelector('section[data-sweep=\"1\"] audio').readyState >= 1",
        timeout=15_000,
    )
    seconds = audio.first.evaluate("a => a.duration")
    assert 0.4 < seconds < 0.6, seconds  # 4,000 frames at 8 kHz
    sweep.locator("select.axis-row").select_option(label="prompt")  # models become columns
    assert grid.locator("th.col-head").all_inner_texts() == list(MODELS)
    sweep.locator("select.axis-row").select_option(label="model")
    assert grid.locator("th.row-head").all_inner_texts() == list(MODELS)
    assert sweep.locator("video[controls]").count() == 2  # redrawn players are players too


def load_every_image(page) -> None:
    page.evaluate(SCROLL_ALL)
    page.wait_for_function(WAIT_ALL_COMPLETE, timeout=15_000)
    assert page.evaluate(BROKEN) == []
    assert page.evaluate("document.images.length") > 0


def launch(pw):
    """Debian's chromium when it is on PATH, else Playwright's own (scripts/test installs one)."""
    try:
        return pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
    except Exception as exc:  # playwright's Error: no browser at all
        pytest.fail(f"no headless chromium ({exc}): run the tests with scripts/test")


def test_gallery_in_headless_chromium(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    recs = build_run_dir(tmp_path)
    report = write_report(tmp_path, recs, title="fox-sweep · seedream-5 lite")
    problems: list[str] = []
    urls: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: urls.append(r.url))
            page.goto(report.as_uri())
            shot = os.environ.get("BATCH_RUNNER_SCREENSHOT")
            if shot:
                page.evaluate("document.fonts.ready")
                page.wait_for_function(WAIT_ALL_COMPLETE, timeout=15_000)
                page.screenshot(path=shot)

            load_every_image(page)
            assert page.evaluate("document.images.length") == 6 + 1 + 2 + 2
            assert grid_shape(page) == (3, 2, 6, [1] * 6)
            grid0 = page.locator('table.grid[data-sweep="0"]')
            heads = grid0.locator("th.row-head").all_inner_texts()
            assert heads == ["fox", "owl", "lighthouse"]
            assert page.locator("div.card").count() == 3
            assert page.locator("div.card p.model").all_inner_texts() == [MODEL] * 3
            check_model_grid(page)
            assert "422001 invalid inputs" in page.locator("div.card .ph").inner_text()
            assert page.get_by_text("<script>alert(1)</script> a cat").count() == 1

            sweep = page.locator('section[data-sweep="0"]')
            sweep.locator("select.axis-row").select_option(label="style")
            assert sweep.locator("select.axis-col").input_value() == "0"  # swapped to subject
            assert grid_shape(page) == (2, 3, 6, [1] * 6)
            assert grid0.locator("th.row-head").all_inner_texts() == ["ukiyo-e", "bauhaus"]
            assert grid0.locator("th.col-head").all_inner_texts() == ["fox", "owl", "lighthouse"]
            load_every_image(page)

            sweep.locator("select.axis-col").select_option(label="style")  # swaps back
            assert grid_shape(page) == (3, 2, 6, [1] * 6)

            with page.context.expect_page() as new_tab:
                page.locator("td.cell a.thumb").first.click()
            assert new_tab.value.url.endswith("/images/00001-fox%20ukiyo-e.jpeg")
        finally:
            browser.close()
    assert problems == []
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls


GALLERY_JOBS = 300
# every image of the page loaded at once (lazy loading off), with the thumbnails, or with the
# originals the cards link (what the gallery showed before thumbnails); milliseconds
LOAD_ALL = """async (originals) => {
  const t0 = performance.now();
  const imgs = [...document.images];
  for (const i of imgs) {
    i.loading = "eager";
    if (originals) i.src = i.parentElement.getAttribute("href");
  }
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return performance.now() - t0;
}"""


def test_gallery_of_300_jobs_shows_thumbnails(tmp_path: Path):
    """300 full-size outputs: the page shows small thumbnails and links the originals. The
    load times are printed (a figure, not an assertion)."""
    from playwright.sync_api import sync_playwright

    recs = []
    scenes = []  # six pictures drawn, copied under 300 names (each still gets its thumbnail)
    for fg in SUBJECTS.values():
        for top, bottom in STYLES.values():
            scenes.append(tmp_path / f"scene-{len(scenes)}.jpeg")
            picture(scenes[-1], (1024, 1024), top, bottom, fg)
    (tmp_path / "images").mkdir()
    for i in range(1, GALLERY_JOBS + 1):
        name = f"images/{i:05d}-job.jpeg"
        shutil.copyfile(scenes[i % len(scenes)], tmp_path / name)
        size = (tmp_path / name).stat().st_size
        rec = JobRecord(f"{i:016x}", i, MODEL, {"prompt": f"job {i}"}, JobState.DONE)
        rec.files = [FileRecord(name, 1, f"{i:064x}", size)]
        recs.append(rec)
    report = write_report(tmp_path, recs, title="300 jobs")
    originals = sum(r.files[0].bytes for r in recs)
    thumbs = sum(p.stat().st_size for p in (tmp_path / ".thumbs").iterdir())
    assert len(list((tmp_path / ".thumbs").iterdir())) == GALLERY_JOBS and thumbs < originals
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(report.as_uri())
            loaded = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            srcs = page.evaluate("[...document.images].map(i => i.getAttribute('src'))")
            assert len(srcs) == GALLERY_JOBS and all(s.startswith(".thumbs/") for s in srcs)
            every = page.evaluate(LOAD_ALL, False)
            assert page.evaluate(BROKEN) == []
            page.reload()
            full = page.evaluate(LOAD_ALL, True)
            assert page.evaluate(BROKEN) == []
        finally:
            browser.close()
    print(
        f"\ngallery of {GALLERY_JOBS} jobs: page load {loaded:.0f} ms; all {GALLERY_JOBS} "
        f"thumbnails loaded and decoded in {every:.0f} ms ({thumbs / 1e6:.1f} MB), the "
        f"originals in {full:.0f} ms ({originals / 1e6:.1f} MB)"
    )
