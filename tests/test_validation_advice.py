"""What `validate` says about prompts and names before anything is paid for: empty prompts are
refused, over-long ones and risky name templates warned, control characters never reach the
terminal raw."""

from __future__ import annotations

from conftest import run_cli


def test_empty_and_whitespace_prompts_are_refused(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text('jobs:\n  - "   "\n  - {prompt: ""}\n  - "a fox"\n')
    res = run_cli("validate", manifest)
    assert res.returncode == 2
    assert "m.yaml:2: prompt: is empty" in res.stderr and "m.yaml:3: prompt: is empty" in res.stderr


def test_a_prompt_longer_than_the_schema_recommends_is_warned(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text('jobs:\n  - "' + "word " * 700 + '"\n  - "a fox"\n')
    res = run_cli("validate", manifest)
    assert res.returncode == 0, res.stderr
    assert "m.yaml:2: prompt has 700 words" in res.stderr and "at most 600" in res.stderr
    assert res.stderr.count("words") == 1


def test_name_templates_without_ext_or_with_split_words_are_warned(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("jobs:\n  - {prompt: a fox, meta: {split: train}}\n")
    res = run_cli("validate", manifest, "--name-template", "{index}-{slug}")
    assert res.returncode == 0 and "has no {ext}" in res.stderr, res.stderr
    res = run_cli("validate", manifest, "--name-template", "{split}/{slug}.{ext}")
    assert res.returncode == 0 and "reads 'train' in it as a split name" in res.stderr


def test_validate_shows_control_characters_escaped(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a fox\\u001b[2J\\rred"}\n')
    res = run_cli("validate", manifest)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\r" not in res.stdout
    assert "a fox\\x1b[2J\\rred" in res.stdout
