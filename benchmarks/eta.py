"""Benchmark 10, ETA honesty: a run with a known latency distribution, its `eta_s` (as
`status --json` computes it from the state file) read while it goes, compared at 25 %, 50 %
and 75 % of the jobs done with the time the run really took to its end.

One `batch-runner run` (300 jobs, uniform latency, --concurrency 20; quick: 40 jobs) against
a `batch-runner simulate` subprocess; the state file is read read-only every 0.25 s, as
`status` and `serve` read it. Error = (ETA - real remaining) / real remaining. Target: within
15 % from the halfway point.

`--serve DIR` also serves the run directory (`batch-runner serve`) and saves screenshots of
the page in headless Chromium into DIR: one at about half way, one after the end.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from batch_runner.store.state import StateStore
from benchmarks import common as c

TARGET = 0.15
# lazy images below the fold never load: only those on screen are waited for
VISIBLE_LOADED = (
    "[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
    ".every(i => i.complete)"
)
POINTS = (0.25, 0.5, 0.75)


def _params(quick: bool) -> dict:
    if quick:
        return {"jobs": 40, "concurrency": 8, "latency": "0.3:0.9"}
    return {"jobs": 300, "concurrency": 20, "latency": "2:6"}


def run(quick: bool, shots: Path | None = None) -> dict:
    p = _params(quick)
    with (
        c.workdir("eta") as tmp,
        c.simulator("--latency", p["latency"], "--image-scale", "0.05") as sim,
    ):
        manifest = c.write_manifest(tmp / "eta.yaml", c.prompts(p["jobs"], "eta"))
        out = tmp / "run"
        cmd = c.run_cmd(manifest, out, "--concurrency", str(p["concurrency"]))
        started = time.time()
        proc = subprocess.Popen(
            cmd, env=c.env_for(sim.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        watcher = _Watcher(out, shots) if shots else None
        samples: list[tuple[float, int, float | None]] = []  # (time, done, eta_s)
        try:
            while proc.poll() is None:
                sample = _sample(out)
                if sample is not None:
                    samples.append((time.time(), *sample))
                    if watcher and sample[0] >= p["jobs"] // 2:
                        watcher.shot("serve-during.png")
                time.sleep(0.25)
            ended = _last_done(out)  # the end the ETA speaks of: the last job done
            if watcher:
                watcher.shot("serve-after.png", settle=True)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if watcher:
                watcher.close()
    rows = []
    for point in POINTS:
        at = next((s for s in samples if s[1] >= point * p["jobs"] and s[2] is not None), None)
        if at is None:
            rows.append((point, None, None, None))
            continue
        real = ended - at[0]
        rows.append((point, at[2], real, (at[2] - real) / real if real > 0 else None))
    return {"params": p, "rows": rows, "wall": ended - started}


def _last_done(out: Path) -> float:
    store = StateStore.open(out, readonly=True)
    try:
        return store.last_activity() or time.time()
    finally:
        store.close()


def _sample(out: Path) -> tuple[int, float | None] | None:
    try:
        store = StateStore.open(out, readonly=True)
    except Exception:  # not created yet
        return None
    try:
        summary = store.summary()
    finally:
        store.close()
    return summary["counts"].get("done", 0), summary.get("eta_s")


class _Watcher:
    """`batch-runner serve` on the run directory, and a headless Chromium on its page."""

    def __init__(self, out: Path, folder: Path):
        self.out, self.folder, self.proc, self.page = out, folder, None, None
        self.taken: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def _start(self) -> None:
        import shutil

        from playwright.sync_api import sync_playwright

        self.proc = subprocess.Popen(
            [c.CLI, "serve", str(self.out), "--port", "0"], stdout=subprocess.PIPE, text=True
        )
        url = self.proc.stdout.readline().split(" at ", 1)[1].split()[0]
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"]
        )
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.goto(url)

    def shot(self, name: str, settle: bool = False) -> None:
        if name in self.taken:
            return
        if self.page is None:
            self._start()
        self.page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1")
        if settle:  # the page's next poll shows the end
            n = self.page.evaluate("Number(document.body.dataset.updates)")
            self.page.wait_for_function(f"Number(document.body.dataset.updates) >= {n + 2}")
        self.page.wait_for_function(VISIBLE_LOADED)
        self.page.screenshot(path=str(self.folder / name))
        self.taken.add(name)

    def close(self) -> None:
        if self.page is not None:
            self.browser.close()
            self.pw.stop()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def report(result: dict) -> str:
    p = result["params"]
    rows = []
    for point, eta, real, err in result["rows"]:
        ok = err is not None and (point < 0.5 or abs(err) <= TARGET)
        rows.append(
            (
                f"{point:.0%}",
                "-" if eta is None else f"{eta:.1f}",
                "-" if real is None else f"{real:.1f}",
                "-" if err is None else f"{err:+.1%}",
                "(not judged)" if point < 0.5 else c.verdict(ok),
            )
        )
    title = (
        f"10. ETA honesty ({p['jobs']} jobs, latency {p['latency']} s uniform, "
        f"--concurrency {p['concurrency']}, run {result['wall']:.0f} s)"
    )
    return c.table(title, ["done", "eta_s", "real remaining s", "error", "within 15 %"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=Path, default=None, help="screenshots of serve into DIR")
    args = parser.parse_args()
    print(report(run(args.quick, args.serve)), flush=True)


if __name__ == "__main__":
    main()
