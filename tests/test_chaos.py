"""A hostile network and API: whole runs through injected faults, 429 storms and expiring ids.

Every test drives the console script against the simulator subprocess. The Retry-After test puts
a small logging proxy (this file run as a script) between the runner and the simulator, because
the simulator keeps no per-request log.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env, spawn_cli, write_manifest
from fastretry import spawn_fast
from PIL import Image

CHAOS_FLAGS = (
    "--error-rate", "0.05", "--drop-rate", "0.05", "--rate-limit", "40",
    "--truncate-rate", "0.1", "--url-ttl", "1", "--fail-rate", "0.05",
    "--lost-submit-rate", "0.02", "--latency", "0.2:0.6", "--image-scale", "0.02",
)  # fmt: skip
RETRIES = 2
LOST_BOUND = 2  # CONTRACT: a job stays uncertain after 2 lost submit answers
# which summary `retries` cause answers which simulator fault
FAULT_CAUSES = {
    "rate_limited": {"429"},
    "error_500": {"5xx"},
    "error_502": {"5xx"},
    "error_503": {"5xx"},
    "error_200": {"5xx"},
    "drop": {"dropped", "timeout"},
    "lost_submit": {"dropped", "timeout"},
    "truncate": {"truncated", "dropped"},
    "url_expired": {"expired_url"},
    "fail": {"generation_failed"},
}


def _summary(res: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def _check_files(out: Path, done: int) -> list[dict]:
    lines = read_metadata(out)
    names = [line["file_name"] for line in lines]
    assert len(names) == len(set(names)) == done  # one line per file, exactly once
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*"))
    assert on_disk == sorted(names)  # no .part left, nothing unlisted
    for line in lines:
        path = out / line["file_name"]
        data = path.read_bytes()
        assert len(data) == line["bytes"]
        assert hashlib.sha256(data).hexdigest() == line["sha256"]
        with Image.open(path) as img:
            img.verify()
    return lines


@pytest.mark.timeout(90)
def test_chaos_mix_finishes_every_job(make_sim, tmp_path):
    sim = make_sim(*CHAOS_FLAGS, "--seed", "11")
    prompts = [f"Chaos job {i}: a paper boat on a pond" for i in range(150)]
    manifest = write_manifest(tmp_path / "chaos.yaml", prompts)
    out = tmp_path / "run"
    started = time.monotonic()
    res = run_cli(
        "run", manifest, "--out", out, "--concurrency", "32", "--retries", str(RETRIES),
        "--no-progress", "--json", env=sim_env(sim),
    )  # fmt: skip
    wall = time.monotonic() - started
    summary = _summary(res)
    stats = sim.stats()
    faults, retries = stats["faults"], summary["retries"]
    duplicates = stats["submitted"] - stats["unique_bodies"]
    print(
        f"\nchaos mix: {summary['jobs']} jobs, counts {summary['counts']}, wall {wall:.1f} s"
        f"\n  faults injected: {dict(sorted(faults.items()))}"
        f"\n  retries by cause: {retries}"
        f"\n  submitted {stats['submitted']}, unique bodies {stats['unique_bodies']}, "
        f"duplicates {duplicates} (generation retries {retries.get('generation_failed', 0)}, "
        f"lost submits {faults.get('lost_submit', 0)}), possible_duplicates "
        f"{summary['possible_duplicates']}"
    )

    counts = summary["counts"]
    ended = counts.get("done", 0) + counts.get("failed", 0) + counts.get("uncertain", 0)
    assert ended == 150, summary
    _check_uncertain(summary, prompts, stats)
    assert res.returncode == (0 if counts.get("done", 0) == 150 else 1)
    for failure in summary["failures"]:  # generations that failed more than --retries times,
        reason = failure["reason"]  # or jobs left uncertain by the resubmit bound
        assert reason.startswith("generation failed") or failure["state"] == "uncertain", failure
    _check_files(out, counts["done"])
    assert {line["prompt"] for line in read_metadata(out)} <= set(prompts)

    # a body sent again is a generation retry or the resubmit of a submit whose answer was lost
    # every job reached the API, but for those the resubmit bound left uncertain (whose
    # submits may all have been dropped before the server saw them)
    assert 150 - counts.get("uncertain", 0) <= stats["unique_bodies"] <= 150
    assert duplicates - retries.get("generation_failed", 0) <= faults.get("lost_submit", 0)
    assert duplicates <= faults.get("fail", 0) + faults.get("lost_submit", 0)
    for kind, n in faults.items():  # every kind of fault injected shows up as a retry cause
        if n and kind in FAULT_CAUSES and kind != "fail":
            assert FAULT_CAUSES[kind] & set(retries), (kind, retries)
    assert sum(faults.values()) > 50 and stats["file_requests_with_auth"] == 0


def _check_uncertain(summary: dict, prompts: list[str], stats: dict) -> None:
    """A job ends uncertain only after LOST_BOUND submits whose answers were lost (the
    resubmit bound), or after one such loss and then a submit that kept failing: checked per
    job against the answers the simulator really lost for its body (dropped, or a 502), not
    against a count that depends on which submit happened to meet a fault under load."""
    lost = {e["body"]["prompt"]: e["lost"] for e in stats["lost_submit_answers"]}
    uncertain = [f for f in summary["failures"] if f["state"] == "uncertain"]
    assert len(uncertain) == summary["counts"].get("uncertain", 0), summary
    for failure in uncertain:
        needed = 1 if failure["reason"].startswith("submit kept failing") else LOST_BOUND
        assert lost.get(prompts[failure["index"] - 1], 0) >= needed, (failure, lost)
    assert sum(lost.values()) > 0  # the chaos mix lost submit answers: the check checked


def _watch(sim, proc: subprocess.Popen[str], every: float = 0.25) -> list[tuple[float, int, int]]:
    """(seconds since start, 429s so far, API requests so far) until the run ends."""
    samples, started = [], time.monotonic()
    while proc.poll() is None and time.monotonic() - started < 50:
        stats = sim.stats()
        api = sum(n for kind, n in stats["requests"].items() if kind != "file")
        samples.append((time.monotonic() - started, stats["faults"].get("rate_limited", 0), api))
        time.sleep(every)
    return samples


def test_429_storm_dies_down(make_sim, tmp_path):
    sim = make_sim("--rate-limit", "5", "--latency", "0.2:0.6", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "storm.yaml", [f"Storm job {i}" for i in range(30)])
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "32", "--no-progress", "--json",
        env=sim_env(sim),
    )  # fmt: skip
    samples = _watch(sim, proc)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["counts"] == {"done": 30}
    first = [s for s in samples if s[0] <= 4.0][-1]
    last = samples[-1]
    print(f"\n429 storm: 429s/requests after 4 s {first[1]}/{first[2]}, in all {last[1]}/{last[2]}")
    assert first[1] > 10  # there was a storm
    late_429s, late_requests = last[1] - first[1], last[2] - first[2]
    assert late_requests > 20  # the run went on long enough to tell
    assert late_429s <= 0.1 * late_requests, samples  # the runner slowed below the limit


# ---- Retry-After: a logging proxy in front of the simulator ----------------------------------


def _proxy_main(target: str, log_path: str) -> None:  # pragma: no cover - runs as a subprocess
    """Forward every request to `target`; log (arrival, answer, key, status, Retry-After)."""
    import asyncio

    from aiohttp import ClientSession, web

    def retry_after(headers, data: bytes) -> float | None:
        values = []
        if headers.get("Retry-After"):
            values.append(float(headers["Retry-After"]))
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
            values.append(float(body["retry_after"]))
        return max(values) if values else None

    async def main() -> None:
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        async with ClientSession(auto_decompress=False) as session:

            async def handle(request: web.Request) -> web.Response:
                arrived = time.monotonic()
                body = await request.read()
                keep = ("Authorization", "Content-Type", "Accept")
                headers = {k: request.headers[k] for k in keep if k in request.headers}
                async with session.request(
                    request.method, target + request.raw_path, data=body or None,
                    headers=headers, allow_redirects=False,
                ) as up:  # fmt: skip
                    data, status, up_headers = await up.read(), up.status, up.headers
                answered = time.monotonic()
                if request.method == "POST" and request.path.startswith("/v1/models/"):
                    key = "submit:" + str(json.loads(body).get("prompt"))
                else:
                    key = request.raw_path.split("/")[3] if request.path.count("/") > 3 else ""
                entry = {
                    "arrived": arrived, "answered": answered, "key": key, "status": status,
                    "retry_after": retry_after(up_headers, data) if status == 429 else None,
                }  # fmt: skip
                log.write(json.dumps(entry) + "\n")
                log.flush()
                passed = ("Content-Type", "Retry-After")
                return web.Response(
                    status=status,
                    body=data,
                    headers={k: up_headers[k] for k in passed if k in up_headers},
                )

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            print(f"proxy listening on http://127.0.0.1:{port}", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


@pytest.fixture
def log_proxy(tmp_path):
    procs = []

    def start(target: str) -> tuple[str, Path]:
        log = tmp_path / "requests.jsonl"
        proc = subprocess.Popen(
            [sys.executable, __file__, "proxy", target, str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        line = proc.stdout.readline().strip()
        assert line.startswith("proxy listening on "), proc.stderr.read()
        return line.rsplit(" ", 1)[1], log

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=10)


def test_retry_after_is_honoured(make_sim, log_proxy, tmp_path):
    sim = make_sim("--rate-limit", "3", "--latency", "0.1:0.3", "--image-scale", "0.02")
    base, log = log_proxy(sim.base_url)
    manifest = write_manifest(tmp_path / "ra.yaml", [f"Patient job {i}" for i in range(10)])
    env = sim_env(sim, RUNCOMFY_API_BASE=base)
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--concurrency", "10",
                  "--no-progress", "--json", env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _summary(res)["counts"] == {"done": 10}

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    checked = 0
    for i, entry in enumerate(entries):
        if entry["status"] != 429 or not entry["retry_after"]:
            continue
        later = [e for e in entries[i + 1 :] if e["key"] == entry["key"]]
        later = [e for e in later if e["arrived"] > entry["answered"]]
        if later:
            nxt = min(later, key=lambda e: e["arrived"])
            waited = nxt["arrived"] - entry["answered"]
            assert waited >= entry["retry_after"] - 0.01, (entry, nxt)
            checked += 1
    print(f"\nRetry-After: {checked} throttled requests asked again, none too soon")
    assert checked >= 3


# ---- ids that expire, answers that turn bad mid-run --------------------------------------------


def test_expired_request_id_fails_the_job_not_the_run(make_sim, tmp_path):
    sim = make_sim("--request-ttl", "0.001", "--latency", "0.05", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "x.yaml", ["A forgotten job", "Another forgotten job"])
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--no-progress", "--json",
                  env=sim_env(sim))  # fmt: skip
    summary = _summary(res)
    assert res.returncode == 1
    assert summary["counts"] == {"failed": 2}
    for failure in summary["failures"]:
        assert "expired" in failure["reason"] and failure["request_id"]
    assert sim.stats()["faults"]["request_expired"] >= 2
    assert sim.stats()["submitted"] == 2  # an expired id is not resubmitted against a real API


def test_expired_request_id_on_resume(make_sim, tmp_path):
    sim = make_sim("--request-ttl", "0.5", "--latency", "0.05", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "x.yaml", [f"Resumed job {i}" for i in range(4)])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    for name in (out / "images").iterdir():  # the files are gone; the ids expire meanwhile
        name.unlink()
    time.sleep(0.7)
    res = run_cli("resume", out, "--no-progress", "--json", env=sim_env(sim))
    summary = _summary(res)
    assert res.returncode == 1
    assert summary["counts"] == {"failed": 4}
    assert all("expired" in f["reason"] for f in summary["failures"])


def _wait_done(out: Path, n: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline and proc.poll() is None:
        status = run_cli("status", out, "--json")
        if status.returncode == 0 and json.loads(status.stdout)["counts"].get("done", 0) >= n:
            return
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=60)  # never leave the run's pipes open
    seen = (status.returncode, status.stdout, status.stderr) if status else None
    raise AssertionError(f"{n} jobs not done in time: last status {seen}; run: {stdout} {stderr}")


@pytest.mark.parametrize(
    ("case", "reason"),
    # an unknown status is not finished: the job runs out of --job-timeout (its last poll,
    # planned from the durations learned, may come before or after the statuses turned bad)
    [("unknown_status@result", "(--job-timeout)"), ("non_json@result", "not JSON")],
)
def test_bad_answers_mid_run_fail_only_their_jobs(make_sim, tmp_path, case, reason):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    prompts = [f"Quick job {i}" for i in range(4)] + ["Slow job [sim:latency=4]"]
    manifest = write_manifest(tmp_path / "b.yaml", prompts)
    out = tmp_path / "run"
    # retries at once: the bad answers are counted, not timed
    # an unknown status is not finished: polled on until --job-timeout
    limit = ["--job-timeout", "6"] if case.startswith("unknown_status") else []
    args = ("run", manifest, "--out", out, "--no-progress", "--json", *limit)
    proc = spawn_fast(*args, env=sim_env(sim))
    _wait_done(out, 4, proc)
    sim.post("/_sim/config", {"hostile": case})  # from now on every /result answer is bad
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert summary["counts"] == {"done": 4, "failed": 1}
    (failure,) = summary["failures"]
    assert reason in failure["reason"] and failure["index"] == 5, failure
    # an unreadable answer is asked again MAX_BAD_ANSWERS times; an unknown status is no error
    assert summary["retries"].get("bad_answer", 0) == (3 if case.startswith("non_json") else 0)
    _check_files(out, 4)


if __name__ == "__main__" and sys.argv[1:2] == ["proxy"]:
    _proxy_main(sys.argv[2], sys.argv[3])


def test_expired_file_urls_are_fetched_again_then_given_up(make_sim, tmp_path):
    """Every file URL dies at once: each job asks /result for fresh URLs 3 times, then fails."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02", "--url-ttl", "0.000001")
    manifest = write_manifest(tmp_path / "u.yaml", ["short-lived url a", "short-lived url b"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", env=sim_env(sim))
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout)
    assert summary["counts"] == {"failed": 2}
    assert all("download failed" in f["reason"] for f in summary["failures"])
    assert summary["retries"]["expired_url"] == 2 * 4  # the first try and 3 refreshes per job
    stats = sim.stats()
    assert stats["requests"]["file"] == 2 * 4 and stats["faults"]["url_expired"] == 2 * 4
    assert stats["submitted"] == 2  # refreshing URLs never resubmits
    assert not (out / "images").exists() or not any((out / "images").rglob("*"))
