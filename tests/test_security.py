"""Security and bad input: the token stays secret, files stay in RUN_DIR/images, no traceback.

Whole runs of the console script against the simulator's hostile modes (127.0.0.2 plays the
foreign host).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env, write_manifest
from fastretry import run_fast

TOKEN = "tok-7f3a9c1e-DO-NOT-LEAK-5b2d"
RUN_FILES = {
    "state.db", "state.db-wal", "state.db-shm", "state.db-journal", "manifest.yaml",
    "manifest.csv", "metadata.jsonl", "report.html", "images", ".lock", "lock",
}  # fmt: skip


def _sim(make_sim, *flags: str):
    return make_sim("--token", TOKEN, "--latency", "0.05", "--image-scale", "0.02", *flags)


def _run(
    sim, manifest: Path, out: Path, *extra: str, debug: bool = False, fast: bool = False, **kw
) -> subprocess.CompletedProcess[str]:
    """The run's console script (`fast`: with retry sleeps off, for tests that neither count
    nor time the waits between tries)."""
    env = sim_env(sim, RUNCOMFY_API_TOKEN=TOKEN)
    pre = ["--debug"] if debug else []
    args = [*pre, "run", manifest, "--out", out, "--no-progress", "--json", *extra]
    res = (run_fast if fast else run_cli)(*args, env=env, **kw)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def _assert_no_token(root: Path, *texts: str) -> None:
    needle = TOKEN.encode()
    for text in texts:
        assert TOKEN not in text
    for path in root.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


def _assert_contained(tmp_path: Path, out: Path, manifest: Path) -> None:
    """Nothing written outside RUN_DIR/images but the run directory's own files."""
    for path in tmp_path.rglob("*"):
        if path in (manifest, out):
            continue
        rel = path.relative_to(out)  # raises when something landed beside the run directory
        assert rel.parts[0] in RUN_FILES, path
        if rel.parts[0] == "images" and path.is_file():
            assert path.suffix in (".png", ".jpg"), path


# ---- the token ---------------------------------------------------------------------------------


def test_token_is_never_written_or_printed(make_sim, tmp_path):
    sim = _sim(make_sim)
    prompts = ["A lantern in the fog", "A kite over dunes", "A broken vase [sim:fail]"]
    manifest = write_manifest(tmp_path / "t.yaml", prompts)
    out = tmp_path / "run"
    res = _run(sim, manifest, out, "--retries", "0")
    assert res.returncode == 1
    assert json.loads(res.stdout)["counts"] == {"done": 2, "failed": 1}
    extra = [run_cli(*cmd) for cmd in (("status", out), ("status", out, "--json"), ("report", out))]
    assert (out / "report.html").is_file() and (out / "state.db").is_file()
    _assert_no_token(tmp_path, res.stdout, res.stderr, *(r.stdout + r.stderr for r in extra))
    assert sim.stats()["file_requests_with_auth"] == 0


@pytest.mark.parametrize("case", ["unknown_status@result", "non_json@submit"])
def test_token_stays_secret_with_debug_on_a_failing_run(make_sim, tmp_path, case):
    sim = _sim(make_sim, "--hostile", case)
    manifest = write_manifest(tmp_path / "t.yaml", ["A lantern in the fog"])
    # an unknown status is polled on until --job-timeout
    res = _run(sim, manifest, tmp_path / "run", "--job-timeout", "2", debug=True)
    assert res.returncode == 1
    assert json.loads(res.stdout)["failures"][0]["reason"]
    _assert_no_token(tmp_path, res.stdout, res.stderr)


def test_rejected_token_is_not_echoed_with_debug(make_sim, tmp_path):
    sim = make_sim("--token", "the-real-one", "--latency", "0.05")
    manifest = write_manifest(tmp_path / "t.yaml", ["A lantern in the fog"])
    res = _run(sim, manifest, tmp_path / "run", debug=True)
    assert res.returncode == 3
    assert "token" in res.stderr.lower()
    _assert_no_token(tmp_path, res.stdout, res.stderr)


def test_file_requests_carry_no_authorization(make_sim, tmp_path):
    sim = _sim(make_sim, "--hostile", "echo_headers")
    manifest = write_manifest(tmp_path / "h.yaml", ["An echo", "Another echo"])
    res = _run(sim, manifest, tmp_path / "run")
    assert res.returncode == 0, res.stderr
    stats = sim.stats()
    assert stats["file_requests_with_auth"] == 0
    headers = stats["file_request_headers"]
    assert len(headers) == 2
    for seen in headers:
        assert "authorization" not in {k.lower() for k in seen}
        assert TOKEN not in json.dumps(seen)


# ---- download hosts ---------------------------------------------------------------------------


def test_redirect_to_another_host_is_refused(make_sim, tmp_path):
    sim = _sim(make_sim, "--hostile", "redirect_offhost")
    manifest = write_manifest(tmp_path / "r.yaml", ["A detour", "Another detour"])
    out = tmp_path / "run"
    res = _run(sim, manifest, out)
    assert res.returncode == 1
    summary = json.loads(res.stdout)
    assert summary["counts"] == {"failed": 2}
    for failure in summary["failures"]:
        assert "host not allowed" in failure["reason"] and "127.0.0.2" in failure["reason"]
    stats = sim.stats()
    # both listeners count into one set of stats: two file requests = none reached 127.0.0.2
    assert stats["requests"]["file"] == 2
    assert stats["file_requests_with_auth"] == 0
    assert not any((out / "images").rglob("*")) if (out / "images").exists() else True


def test_offhost_urls_need_allow_download_host(make_sim, tmp_path):
    sim = _sim(make_sim, "--hostile", "offhost_urls")
    manifest = write_manifest(tmp_path / "o.yaml", ["A far away file"])
    res = _run(sim, manifest, tmp_path / "refused")
    assert res.returncode == 1
    (failure,) = json.loads(res.stdout)["failures"]
    assert "host not allowed" in failure["reason"]
    assert sim.stats()["requests"]["file"] == 0

    out = tmp_path / "allowed"
    res = _run(sim, manifest, out, "--allow-download-host", "127.0.0.2")
    assert res.returncode == 0, res.stderr
    (line,) = read_metadata(out)
    assert (out / line["file_name"]).stat().st_size == line["bytes"]
    assert sim.stats()["file_requests_with_auth"] == 0


def test_file_larger_than_max_file_bytes_is_aborted(make_sim, tmp_path):
    sim = _sim(make_sim)
    manifest = write_manifest(tmp_path / "b.yaml", ["A big picture"])
    out = tmp_path / "run"
    res = _run(sim, manifest, out, "--max-file-bytes", "200")
    assert res.returncode == 1
    (failure,) = json.loads(res.stdout)["failures"]
    assert "too large" in failure["reason"] or "larger than" in failure["reason"], failure
    images = out / "images"
    assert not images.exists() or not list(images.rglob("*"))  # no file, no .part
    assert not (out / "metadata.jsonl").exists() or not read_metadata(out)


# ---- hostile answers --------------------------------------------------------------------------

HOSTILE = [
    ("non_json", 1, "unreadable"),
    ("oversized", 1, "too large"),
    ("wrong_types", 1, "request_id"),
    ("missing_fields", 1, "request_id"),
    ("unknown_status", 1, "last status 'exploded'"),  # polled on until --job-timeout
    ("many_urls", 1, "more than 1000 output files"),
    ("weird_request_id", 0, None),
    ("bad_file", 1, "not a PNG, JPEG, WebP"),
]


@pytest.mark.parametrize(("case", "code", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_answers_fail_jobs_cleanly(make_sim, tmp_path, case, code, reason):
    sim = _sim(make_sim, "--hostile", case)
    manifest = write_manifest(tmp_path / "h.yaml", ["A hostile sky", "A hostile sea"])
    out = tmp_path / "run"
    extra = ["--job-timeout", "2"] if case == "unknown_status" else []
    res = _run(sim, manifest, out, *extra, fast=True, cwd=tmp_path)
    assert res.returncode == code, res.stderr
    summary = json.loads(res.stdout)
    if reason is None:
        assert summary["counts"] == {"done": 2}
        ids = {line["request_id"] for line in read_metadata(out)}
        assert all(i.startswith("../../etc/passwd?") for i in ids)  # kept as is, quoted on use
    else:
        assert len(summary["failures"]) == 2
        for failure in summary["failures"]:
            assert reason in failure["reason"], failure
    _assert_contained(tmp_path, out, manifest)
    _assert_no_token(tmp_path, res.stdout, res.stderr)


# ---- names and manifests ------------------------------------------------------------------------


def test_name_template_from_prompt_stays_in_images(make_sim, tmp_path):
    sim = _sim(make_sim)
    prompts = ["../../etc/passwd", "/etc/shadow", "..", "a/../../b"]
    manifest = write_manifest(tmp_path / "n.yaml", prompts)
    out = tmp_path / "run"
    res = _run(sim, manifest, out, "--name-template", "{prompt}.{ext}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    images = (out / "images").resolve()
    lines = read_metadata(out)
    assert len(lines) == 4
    for line in lines:
        path = (out / line["file_name"]).resolve()
        assert path.is_relative_to(images) and path != images and path.is_file()
    _assert_contained(tmp_path, out, manifest)


def test_directory_or_missing_path_as_manifest(tmp_path):
    (tmp_path / "adir.yaml").mkdir()
    for target in (tmp_path / "adir.yaml", tmp_path / "missing.yaml", tmp_path):
        for command in ("run", "validate"):
            res = run_cli(command, target, "--out", tmp_path / "out") if command == "run" else (
                run_cli(command, target)
            )  # fmt: skip
            assert res.returncode == 2, (command, target, res.stderr)
            assert "Traceback" not in res.stderr
            assert str(target.name) in res.stderr
            assert len(res.stderr.strip().splitlines()) <= 2, res.stderr
    assert not (tmp_path / "out").exists()


def test_csv_with_bom_crlf_and_quoted_newlines_runs(make_sim, tmp_path):
    sim = _sim(make_sim)
    manifest = tmp_path / "m.csv"
    text = 'prompt,meta.split\r\n"A fox\r\nin two lines",train\r\n"A ""quoted"" owl",test\r\n'
    manifest.write_bytes(b"\xef\xbb\xbf" + text.encode())
    out = tmp_path / "run"
    res = _run(sim, manifest, out)
    assert res.returncode == 0, res.stderr
    lines = sorted(read_metadata(out), key=lambda line: line["index"])
    assert [line["prompt"] for line in lines] == ["A fox\r\nin two lines", 'A "quoted" owl']
    assert [line["meta"]["split"] for line in lines] == ["train", "test"]
    assert all(not k.startswith("\ufeff") for k in lines[0])
