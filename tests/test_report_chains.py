"""A pipeline's report.html (issue 27 item 5): each first-stage job with its descendants
beside it (a child's card inside its parent's chain), and a sweep grid per stage. Run through
the CLI against the simulator; the page's structure read with html.parser and in Chromium."""

from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env
from pipeline_manifests import I2V, T2I, V2V

pytestmark = pytest.mark.timeout(120)

MANIFEST = f"""\
stages:
  stills:
    model: {T2I}
    jobs:
      - "An owl at dusk [sim:fail]"
    sweep:
      - prompt: "A {{animal}} in {{style}} style"
        vars: {{animal: [fox, owl], style: [ink, oil]}}
  clips:
    model: {I2V}
    sweep:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, {{motion}}"
        vars: {{motion: [slow pan, fast zoom]}}
        duration: "5"
  longer:
    model: {V2V}
    jobs:
      - video_url: {{from: clips, first: true}}
        prompt: "{{stills.animal}} walks away"
"""
VOID = {"img", "br", "wbr", "meta", "link", "input", "source", "hr"}


class Chains(HTMLParser):
    """Each card's id → the ids of the cards whose chains enclose it (outermost first)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.owners: list[str | None] = []  # the first card of each open chain, by stack depth
        self.ancestors: dict[str, list[str]] = {}
        self.ids: Counter[str] = Counter()
        self.sections: dict[str, set[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if a.get("id"):
            self.ids[a["id"]] += 1
        if tag == "div" and "card" in classes:
            chains = [i for i, (t, at) in enumerate(self.stack) if "chain" in _cls(at)]
            if chains and self.owners[chains[-1]] is None:
                self.owners[chains[-1]] = a["id"]
            self.ancestors[a["id"] or ""] = [self.owners[i] or "" for i in chains[:-1]]
        if tag == "table" and "grid" in classes:
            section = next(at.get("id") for t, at in reversed(self.stack) if t == "section")
            self.sections.setdefault(section or "", set()).add("grid")
        if tag not in VOID:
            self.stack.append((tag, a))
            self.owners.append(None)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            self.owners.pop()
            if self.stack.pop()[0] == tag:
                return


def _cls(attrs: dict[str, str | None]) -> list[str]:
    return (attrs.get("class") or "").split()


def test_each_chain_shows_children_inside_their_parents_chain(make_sim, tmp_path: Path):
    sim = make_sim("--latency", "0.05:0.2", "--image-scale", "0.02")
    manifest, out = tmp_path / "p.yaml", tmp_path / "run"
    manifest.write_text(MANIFEST, encoding="utf-8")
    res = run_cli(
        "run", manifest, "--out", out, "--no-progress", "--json", "--retries", "0", env=sim_env(sim)
    )
    assert res.returncode == 1, res.stderr  # the owl at dusk failed
    assert json.loads(res.stdout)["stages"]["longer"]["done"] == 8
    page = Chains()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert [i for i, n in page.ids.items() if n > 1] == []  # a stage's sweep repeats no id
    lines = read_metadata(out)
    by_file = {line["file_name"]: line for line in lines}
    assert Counter(line["stage"] for line in lines) == {"stills": 4, "clips": 8, "longer": 8}
    for line in lines:
        chain = []
        parent = line
        while parent["parent_file"]:
            parent = by_file[parent["parent_file"]]
            chain.insert(0, f"job-{parent['index']}")
        # stills: a chain of their own; clips: inside their still's; longer: still, then clip
        assert page.ancestors[f"job-{line['index']}"] == chain, line
    failed = next(
        i
        for i, anc in page.ancestors.items()
        if i not in {f"job-{line['index']}" for line in lines}
    )
    assert page.ancestors[failed] == []  # the failed still starts a chain with no children
    # a grid per stage that sweeps two fields: stills (animal x style), clips (parent x motion)
    assert page.sections == {"sweep-stills-0": {"grid"}, "sweep-clips-0": {"grid"}}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'href="#chains"' in html and "varying: parent (4), motion (2)" in html
    _check_in_chromium(out / "report.html", {f"job-{x['index']}": x for x in lines}, by_file)


# each card's parent card as the browser lays it out: the card heading the chain that holds
# the column (.kids) its own chain is in
PARENT_CARDS = """() => Object.fromEntries([...document.querySelectorAll(".chain > .card")].map(
  c => [c.id, c.parentElement.parentElement.closest(".chain")?.querySelector(":scope > .card")
    ?.id ?? null]))"""
# a child's chain is drawn to the right of its parent's card
RIGHT_OF = """([a, b]) => document.getElementById(b).getBoundingClientRect().left >=
  document.getElementById(a).getBoundingClientRect().right"""


def _check_in_chromium(report: Path, by_id: dict[str, dict], by_file: dict[str, dict]) -> None:
    from playwright.sync_api import sync_playwright
    from test_report_browser import launch

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(report.as_uri())
            parents = page.evaluate(PARENT_CARDS)
            for card, line in by_id.items():
                want = line["parent_file"] and f"job-{by_file[line['parent_file']]['index']}"
                assert parents[card] == (want or None), (card, parents[card])
                if want:
                    assert page.evaluate(RIGHT_OF, [want, card])
            assert page.locator("section#sweep-clips-0 table.grid th.row-head").count() == 4
            assert page.locator("section#chains video").count() == 16  # clips and longer
        finally:
            browser.close()
    assert problems == []
