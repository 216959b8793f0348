"""`batch-runner models`: the bundled catalogue offline, search, kind, one model, the live one."""

from __future__ import annotations

import json

from conftest import run_cli, sim_env

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
ACE = "acestep-ai/ace-step-1.5/text-to-audio"


def models(*args, env=None):
    res = run_cli("models", *args, env=env)
    assert res.returncode == 0, res.stderr
    return res


def test_listing_offline_has_every_bundled_model():
    listed = json.loads(models("--json", "--offline").stdout)["models"]
    assert len(listed) == 121 and len({m["model_id"] for m in listed}) == 121
    kinds = [m["output_type"] for m in listed]
    assert (kinds.count("IMAGE"), kinds.count("VIDEO"), kinds.count("AUDIO")) == (25, 90, 6)
    ace = next(m for m in listed if m["model_id"] == ACE)
    assert ace["required"] == ["tags"] and "base_price_usd" not in ace
    text = models("--offline").stdout
    assert SEEDREAM in text and "121 models" in text


def test_search_and_kind_filter():
    found = json.loads(models("seedream", "--json", "--offline").stdout)["models"]
    assert SEEDREAM in [m["model_id"] for m in found]
    assert all("seedream" in m["model_id"] for m in found)
    audio = json.loads(models("--kind", "audio", "--json", "--offline").stdout)["models"]
    assert len(audio) == 6 and {m["output_type"] for m in audio} == {"AUDIO"}
    assert json.loads(models("no-such-words", "--json").stdout) == {"models": []}


def test_one_model_table_and_json():
    text = models(SEEDREAM, "--offline").stdout
    header = text.splitlines()[3].split()
    assert header == ["INPUT", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED", "MEDIA"]
    row = next(line for line in text.splitlines() if line.startswith("resolution "))
    assert "2304x1728 (4:3)" in row and "2K, 3K" in row
    assert "yes" in next(line for line in text.splitlines() if line.startswith("prompt "))
    one = json.loads(models(ACE, "--json", "--offline").stdout)
    assert one["model_id"] == ACE and one["output_type"] == "AUDIO"
    assert one["required"] == ["tags"] and "tags" in one["input_schema"]["properties"]
    media = models("google/nano-banana-2-lite/edit", "--offline").stdout
    assert "image (list)" in next(x for x in media.splitlines() if x.startswith("image_urls"))


def test_unknown_model_id_exits_2_with_did_you_mean():
    res = run_cli("models", SEEDREAM[:-1], "--offline")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"did you mean '{SEEDREAM}'" in res.stderr


def test_live_catalogue_adds_prices_and_is_cached(make_sim):
    sim = make_sim("--price", f"{SEEDREAM}=0.25")
    listed = json.loads(models("--json", env=sim_env(sim)).stdout)["models"]
    seedream = next(m for m in listed if m["model_id"] == SEEDREAM)
    assert seedream["base_price_usd"] == 0.25 and seedream["price_unit"] == "output"
    assert len(listed) == 121
    sim.stop()
    # the API is gone: --offline (and a failed refresh) still know the cached price
    one = json.loads(models(SEEDREAM, "--json", "--offline", env=sim_env(sim)).stdout)
    assert one["base_price_usd"] == 0.25
    res = models("seedream", "--json", env=sim_env(sim))
    assert "could not be read" in res.stderr
    cached = json.loads(res.stdout)["models"]
    assert next(m for m in cached if m["model_id"] == SEEDREAM)["base_price_usd"] == 0.25
