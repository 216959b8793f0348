"""`status`, the summary and the report show each figure the same way: one byte-size formatter
(decimal units, stated), the possible extra cost of possible duplicates in the report header as
in `status`, model ids that wrap only at '/' and '-'."""

from __future__ import annotations

import json
import re

from conftest import run_cli, sim_env

from batch_runner.report.html import breakable
from batch_runner.sizes import size_text

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"


def test_size_text_uses_decimal_units_with_one_decimal():
    assert [size_text(n) for n in (0, 999, 1000, 3004, 999_949, 999_950)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "3.0 kB",
        "999.9 kB",
        "1.0 MB",
    ]
    assert size_text(7_000_000) == "7.0 MB"  # 6.7 MiB: never written as "6.7 MB"
    assert size_text(6_900_000_000) == "6.9 GB"


def test_model_ids_may_wrap_only_after_slashes():
    assert breakable(SEEDREAM) == "bytedance/<wbr>seedream-5/<wbr>lite/<wbr>text-to-image"
    assert breakable("<b>/x") == "&lt;b&gt;/<wbr>x"


def test_status_and_report_agree_on_size_and_possible_extra_cost(make_sim, tmp_path):
    sim = make_sim(
        "--latency", "0.05:0.15", "--image-scale", "0.05", "--price", f"{SEEDREAM}=0.1",
        "--lost-submit-rate", "0.5", "--seed", "3",
    )  # fmt: skip
    manifest = tmp_path / "m.yaml"
    jobs = "\n".join(f"  - prompt: job {i}" for i in range(12))
    manifest.write_text(f"model: {SEEDREAM}\njobs:\n{jobs}\n")
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    assert res.returncode in (0, 1), res.stderr
    summary = json.loads(run_cli("status", out, "--json").stdout)
    extra = summary["cost"]["possible_extra_usd"]
    assert summary["possible_duplicates"] >= 1 and extra > 0, summary  # lost answers resent

    text = run_cli("status", out).stdout
    size = size_text(summary["bytes"])
    assert f"files: {summary['files']} ({size})" in text
    assert f"possibly ${extra:.2f} more" in text
    assert run_cli("report", out).returncode == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    header = page.split('<header class="top">')[1].split("</header>")[0]
    assert f'<span title="{summary["bytes"]} bytes">{size}</span>' in header
    shown = re.sub(r"<[^>]+>", "", header)
    print(f"status: {text.splitlines()[1]!r}; report header: {shown!r}")
    assert f"possibly ${extra:.2f} more" in shown
    assert "seedream-5/<wbr>lite" in page and "word-break: break-all; }\n.model" not in page
