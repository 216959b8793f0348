"""`batch-runner serve` in a real headless Chromium (issue 29): the page of a finished run, marks
set with the keyboard reach state.db (and metadata.jsonl once the server stops), a run in
progress updates the page without a reload, the token never appears; the JSON API's refusals.

Set BATCH_RUNNER_SCREENSHOT_DIR=DIR to keep screenshots of the pages (during and after a run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import CLI, read_metadata, run_cli, spawn_cli, write_manifest
from test_report_browser import launch

from batch_runner.store.state import StateStore

TOKEN = "tok-serve-7f3a9c-secret"
PROMPTS = [f"a small {thing}" for thing in ("fox", "owl", "boat", "lamp", "tree", "cat")]


def _env(sim) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    return env | {"RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_API_BASE": sim.base_url}


class Served:
    """A `batch-runner serve` subprocess on a free port."""

    def __init__(self, run_dir: Path, *extra: str):
        self.proc = subprocess.Popen(
            [CLI, "serve", str(run_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("serving "):
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split(" at ", 1)[1].split()[0].rstrip("/")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: bytes, ctype: str = "application/json") -> tuple[int, dict]:
        req = urllib.request.Request(
            self.url + path, data=body, method="POST", headers={"Content-Type": ctype}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return err


@pytest.fixture
def served():
    servers: list[Served] = []

    def start(run_dir: Path, *extra: str) -> Served:
        servers.append(Served(run_dir, *extra))
        return servers[-1]

    yield start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def _shot(page, name: str) -> None:
    folder = os.environ.get("BATCH_RUNNER_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=False)


def _watch(page, bodies: list[str], problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def on_response(response) -> None:
        if "/api/" in response.url:
            bodies.append(response.text())

    page.on("response", on_response)


def _poll_every(page, url: str, ms: int) -> None:
    """The page as served, but polling every `ms` instead of every POLL_MS: the same updates,
    without waiting seconds for each."""
    from batch_runner.serve.page import POLL_MS

    def faster(route) -> None:
        response = route.fetch()
        body = response.text()
        assert f"const POLL_MS = {POLL_MS};" in body
        route.fulfill(response=response, body=body.replace(f"= {POLL_MS};", f"= {ms};", 1))

    page.route(url, faster)


def test_finished_run_marked_with_the_keyboard(make_sim, served, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    sim = make_sim("--latency", "0.02:0.05", "--token", TOKEN)
    out = tmp_path / "run"
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS, output_format="png")
    assert run_cli("run", manifest, "--out", out, "--no-progress", env=_env(sim)).returncode == 0
    server = served(out)
    bodies: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            _watch(page, bodies, problems)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('.card').length === 6")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            assert page.locator("#eta").inner_text() == "ETA: finished"
            assert "done6" in page.locator("#counts").inner_text().replace(" ", "")
            newest = page.locator(".card").first.get_attribute("data-key")
            assert page.locator(".card.sel").get_attribute("data-key") == newest
            # keep, reject, skip one, keep; each mark moves on to the next output
            for key in ("y", "x", "ArrowRight", "y"):
                page.keyboard.press(key)
            page.wait_for_function(
                "document.getElementById('marks').textContent === 'marked: keep 2, reject 1'"
            )
            cards = page.locator(".card")
            assert cards.nth(0).get_attribute("class").split() == ["card", "m-keep"]
            assert "m-reject" in cards.nth(1).get_attribute("class")
            # the same key again clears a mark: back to the first, reject it, then clear it
            page.keyboard.press("Home")
            for key in ("ArrowLeft", "ArrowLeft", "ArrowLeft", "ArrowLeft", "u"):
                page.keyboard.press(key)
            page.wait_for_function(
                "document.getElementById('marks').textContent === 'marked: keep 1, reject 1'"
            )
            _shot(page, "serve-finished.png")
            html = page.content()
        finally:
            browser.close()
    assert problems == []
    store = StateStore.open(out, readonly=True)
    try:
        marks = {job.key: job.mark for job in store.jobs()}
        assert store.summary()["marks"] == {"keep": 1, "reject": 1}
    finally:
        store.close()
    assert sorted(m for m in marks.values() if m) == ["keep", "reject"]
    assert marks[newest] is None
    server.stop()  # pending marks are written on the way out
    lines = {line["key"]: line.get("mark") for line in read_metadata(out)}
    assert lines == marks
    assert TOKEN not in html and all(TOKEN not in body for body in bodies)
    assert len(bodies) >= 2


def test_a_run_in_progress_updates_the_page(make_sim, served, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    sim = make_sim("--latency", "0.2:0.4", "--token", TOKEN)
    out, env = tmp_path / "run", _env(sim)
    first = write_manifest(tmp_path / "m.yaml", PROMPTS[:1], output_format="png")
    assert run_cli("run", first, "--out", out, "--no-progress", env=env).returncode == 0
    server = served(out)  # the directory exists: now a longer run writes it while served
    prompts = [f"{p}, take {i}" for i in range(4) for p in PROMPTS[:4]]
    more = write_manifest(tmp_path / "m.yaml", PROMPTS[:1] + prompts, output_format="png")
    bodies: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            _watch(page, bodies, problems)
            _poll_every(page, server.url + "/", 250)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('.card').length === 1")
            page.evaluate("window.sameDocument = true")
            proc = spawn_cli("run", more, "--out", out, "--concurrency", "4", env=env)
            try:
                page.wait_for_function(
                    "document.getElementById('live').textContent.includes('a run is writing')"
                )
                page.wait_for_function("document.querySelectorAll('.card').length >= 4")
                shown = page.locator(".card").count()
                assert 4 <= shown < 17, shown  # mid-run: some, not all
                if os.environ.get("BATCH_RUNNER_SCREENSHOT_DIR"):
                    page.wait_for_function("[...document.images].every(i => i.complete)")
                    _shot(page, "serve-during.png")
                assert proc.wait(timeout=90) == 0, proc.stderr.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
            page.wait_for_function(
                "document.querySelectorAll('.card').length === 17", timeout=20_000
            )
            page.wait_for_function(
                "document.getElementById('live').textContent.includes('no run going')"
            )
            assert page.evaluate("window.sameDocument") is True  # never reloaded
            assert page.locator("#eta").inner_text() == "ETA: finished"
            _shot(page, "serve-after.png")
            html = page.content()
        finally:
            browser.close()
    assert problems == []
    assert TOKEN not in html and all(TOKEN not in body for body in bodies)


def test_api_refusals_and_private_files(make_sim, served, tmp_path: Path):
    sim = make_sim("--latency", "0.02:0.05", "--token", TOKEN)
    out = tmp_path / "run"
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS[:2], output_format="png")
    assert run_cli("run", manifest, "--out", out, "--no-progress", env=_env(sim)).returncode == 0
    server = served(out)
    status = server.get("/api/status")
    assert status == json.loads(run_cli("status", out, "--json").stdout)
    key = server.get("/api/outputs")["outputs"][0]["key"]
    assert server.post("/api/marks", json.dumps({"key": key, "mark": "keep"}).encode()) == (
        200,
        {"key": key, "mark": "keep"},
    )
    assert server.post("/api/marks", b'{"key": "nope", "mark": "keep"}')[0] == 404
    assert server.post("/api/marks", json.dumps({"key": key, "mark": "maybe"}).encode())[0] == 400
    assert server.post("/api/marks", f"key={key}&mark=reject".encode(), "text/plain")[0] == 415
    for private in ("state.db", "manifest.yaml", "images/../state.db", ".lock"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "/files/" + private, timeout=10)
        err.value.close()
        assert err.value.code == 404, private
    req = urllib.request.Request(server.url + "/api/status", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    err.value.close()
    assert err.value.code == 421
    res = run_cli("serve", out, "--host", "0.0.0.0")
    assert res.returncode == 2 and "--allow-remote" in res.stderr
    assert run_cli("serve", tmp_path / "nowhere").returncode == 2
