"""The token: RUNCOMFY_API_TOKEN, or RunComfy's own RUNCOMFY_TOKEN (ours wins), never shown."""

from __future__ import annotations

from conftest import SIM_TOKEN, run_cli, sim_env, write_manifest

from batch_runner.cli.token import scrub


def test_runcomfy_token_alone_is_accepted(sim, tmp_path):
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox"])
    env = sim_env(sim)
    env["RUNCOMFY_TOKEN"] = env.pop("RUNCOMFY_API_TOKEN")
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 1


def test_ours_wins_when_both_are_set(sim, tmp_path):
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox"])
    env = sim_env(sim, RUNCOMFY_TOKEN="not-the-token")  # RUNCOMFY_API_TOKEN is the right one
    res = run_cli("run", manifest, "--out", tmp_path / "ok", "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    env = sim_env(sim, RUNCOMFY_API_TOKEN="not-the-token", RUNCOMFY_TOKEN=SIM_TOKEN)
    res = run_cli("run", manifest, "--out", tmp_path / "bad", "--no-progress", env=env)
    assert res.returncode == 3, res.stderr
    assert "not-the-token" not in res.stderr + res.stdout


def test_without_any_token_the_message_names_the_variable(tmp_path):
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox"])
    res = run_cli("run", manifest, "--out", tmp_path / "run")
    assert res.returncode == 2 and "RUNCOMFY_API_TOKEN" in res.stderr
    assert "Traceback" not in res.stderr


def test_scrub_hides_tokens_from_either_variable(monkeypatch):
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "secret-one")
    monkeypatch.setenv("RUNCOMFY_TOKEN", "secret-two")
    assert scrub("a secret-one b secret-two c") == "a *** b *** c"
    monkeypatch.setenv("RUNCOMFY_TOKEN", "")
    assert scrub("nothing to hide") == "nothing to hide"
