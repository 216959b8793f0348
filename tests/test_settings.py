"""Run settings come from layers: defaults < manifest `options:` < flags; resume and cancel:
the settings stored in the state file < flags."""

from __future__ import annotations

import pytest
from conftest import run_cli

from batch_runner.cli.commands import command_line
from batch_runner.cli.main import build_parser
from batch_runner.errors import UsageError
from batch_runner.settings import RunSettings
from batch_runner.store.state import StateStore


def flags(*argv: str) -> dict:
    return command_line(build_parser().parse_args(list(argv)))


def test_no_layers_are_the_defaults():
    assert RunSettings.from_layers() == RunSettings()


def test_manifest_options_beat_defaults_and_flags_beat_both():
    options = {"concurrency": 3, "retries": 4, "name-template": "{index}.{ext}"}
    settings = RunSettings.from_layers(
        ("manifest options", options),
        ("command line", flags("run", "m.yaml", "--concurrency", "5")),
    )
    assert settings.concurrency == 5  # flag over manifest
    assert settings.retries == 4 and settings.name_template == "{index}.{ext}"  # manifest
    assert settings.job_timeout == RunSettings().job_timeout  # default
    assert settings.progress and not settings.json


def test_flags_not_given_leave_lower_layers_alone():
    argv = ("run", "m.yaml", "--no-resubmit-uncertain", "--json")
    settings = RunSettings.from_layers(
        ("manifest options", {"resubmit_uncertain": True, "max_jobs": 7}),
        ("command line", flags(*argv)),
    )
    assert settings.resubmit_uncertain is False and settings.max_jobs == 7
    assert settings.json and not settings.progress  # --json keeps stdout for the summary


def test_resume_flags_beat_the_stored_settings():
    stored = RunSettings(concurrency=2, retries=3, api_base="http://127.0.0.1:9", simulate=True)
    settings = RunSettings.from_layers(
        ("state file", stored.stored()),
        ("command line", flags("resume", "run", "--retries", "0", "--no-progress")),
    )
    assert settings.retries == 0 and settings.concurrency == 2
    assert settings.simulate and settings.api_base == "http://127.0.0.1:9"
    assert not settings.progress


def test_a_new_api_base_replaces_the_stored_simulator(monkeypatch):
    stored = RunSettings(simulate=True).stored()
    given = flags("resume", "run", "--api-base", "http://127.0.0.1:8")
    settings = RunSettings.from_layers(("state file", stored), ("command line", given))
    assert settings.api_base == "http://127.0.0.1:8" and not settings.simulate
    monkeypatch.setenv("RUNCOMFY_API_BASE", "http://127.0.0.1:7")
    settings = RunSettings.from_layers(
        ("state file", stored), ("command line", flags("resume", "r"))
    )
    assert settings.api_base == "http://127.0.0.1:7" and not settings.simulate


def test_cancel_goes_where_the_jobs_went_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("RUNCOMFY_API_BASE", "http://127.0.0.1:7")
    stored = RunSettings(api_base="http://127.0.0.1:9").stored()

    def cancel(*argv: str) -> RunSettings:
        args = build_parser().parse_args(["cancel", "run", *argv])
        given = command_line(args, base_from_env=False)
        return RunSettings.from_layers(("state file", stored), ("command line", given))

    assert cancel().api_base == "http://127.0.0.1:9"
    assert cancel("--api-base", "http://127.0.0.1:8").api_base == "http://127.0.0.1:8"


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([("manifest options", {"colour": "red"})], "manifest options: unknown option 'colour'"),
        ([("state file", {"concurrency": "many"})], "state file: option 'concurrency'"),
        ([("command line", {"concurrency": 0})], "--concurrency must be at least 1"),
    ],
)
def test_a_bad_layer_names_where_it_came_from(layers, message):
    with pytest.raises(UsageError, match=message):
        RunSettings.from_layers(*layers)


def test_a_run_stores_the_layered_settings(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("options: {concurrency: 3, retries: 2}\njobs: [a fox]\n")
    out = tmp_path / "run"
    res = run_cli(
        "run", manifest, "--out", out, "--simulate", "--concurrency", "5", "--no-progress"
    )
    assert res.returncode == 0, res.stderr
    store = StateStore.open(out, readonly=True)
    try:
        stored = store.get_meta("settings", {})
    finally:
        store.close()
    assert stored["concurrency"] == 5 and stored["retries"] == 2 and stored["simulate"] is True


def test_validate_takes_max_jobs_from_the_flag_over_the_manifest(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("options: {max_jobs: 1}\njobs: [a, b, c]\n")
    res = run_cli("validate", manifest)
    assert res.returncode == 2 and "more than the limit of 1" in res.stderr
    res = run_cli("validate", manifest, "--max-jobs", "3")
    assert res.returncode == 0, res.stderr
