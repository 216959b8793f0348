"""The gallery rendered from synthetic records: escaping, failures, counts, sweep grids, scale."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.report.page import render_report, write_report

MODEL = "bytedance/seedream-5/lite/text-to-image"


def job(index: int, state: JobState = JobState.DONE, *, files: int = 1, **kw) -> JobRecord:
    inputs = kw.pop("inputs", {"prompt": f"prompt {index}", "resolution": "2K"})
    recs = [
        FileRecord(f"images/{index:05d}-x-{k}.png", k, "ab" * 32, 1000 + k)
        for k in range(1, files + 1)
    ]
    if state is not JobState.DONE:
        recs = []
    return JobRecord(
        key=f"k{index:015d}", index=index, model=MODEL, inputs=inputs, state=state, files=recs, **kw
    )


def sweep_jobs(sweep: int = 0, start: int = 1) -> list[JobRecord]:
    """3 subjects x 2 styles, with a templated prompt (which must not become an axis)."""
    out = []
    for subject in ("fox", "owl", "cat"):
        for style in ("ukiyo-e", "bauhaus"):
            i = start + len(out)
            inputs = {"prompt": f"A {subject} in {style}", "resolution": "2K"}
            out.append(
                job(i, inputs=inputs, vars={"subject": subject, "style": style}, sweep=sweep)
            )
    return out


class Collector(HTMLParser):
    """Collects start tags with their attributes and the text inside each element by class."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text_by_class: dict[str, list[str]] = {}
        self._open: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        for cls in (a.get("class") or "").split():
            self._open.append((tag, cls))
            self.text_by_class.setdefault(cls, []).append("")

    def handle_endtag(self, tag):
        while self._open and self._open[-1][0] == tag:
            self._open.pop()
            break

    def handle_data(self, data):
        for _, cls in self._open:
            self.text_by_class[cls][-1] += data


def parse(html: str) -> Collector:
    c = Collector()
    c.feed(html)
    return c


def with_class(c: Collector, tag: str, cls: str) -> list[dict[str, str | None]]:
    return [a for t, a in c.tags if t == tag and cls in (a.get("class") or "").split()]


def sweep_data(html: str, n: int) -> dict:
    m = re.search(
        rf'data-sweep="{n}">.*?<script type="application/json" class="sweep-data">(.*?)</script>',
        html,
        re.S,
    )
    assert m, f"no data block for sweep {n}"
    return json.loads(m.group(1))


def test_prompt_with_script_is_text_everywhere():
    evil = '</script><script>alert("x")</script> & <b>bold</b>'
    recs = [job(1, inputs={"prompt": evil, "style": "<i>"}, meta={"<m>": "<v>"})]
    recs += sweep_jobs(start=2)
    recs[1].inputs["prompt"] = evil  # also inside the embedded JSON and tooltips of a grid
    html = render_report(recs, title="<title> & co")
    assert "<script>alert" not in html
    assert "<b>bold</b>" not in html and "<i>" not in html and "<m>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;title&gt; &amp; co" in html
    # exactly the page's own script blocks: one data block and the inline JS
    assert html.count("<script") == 2
    data = sweep_data(html, 0)
    assert any(evil in j["t"] for j in data["jobs"])


def test_no_network_references():
    html = render_report(sweep_jobs() + [job(9)], title="t")
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert "@import" not in html and "url(http" not in html


def test_failure_reasons_and_placeholders():
    recs = [
        job(1),
        job(2, JobState.FAILED, reason="422001 invalid inputs: resolution"),
        job(3, JobState.CANCELLED, reason="cancelled by user"),
        job(4, JobState.UNCERTAIN, reason="submit answer lost"),
    ]
    c = parse(render_report(recs, title="t"))
    assert len(with_class(c, "div", "card")) == 4
    imgs = [a for t, a in c.tags if t == "img"]
    assert len(imgs) == 1
    assert [a.get("class") for a in with_class(c, "div", "ph")] == ["ph"] * 3
    phs = "".join(c.text_by_class["ph"])
    for reason in ("422001 invalid inputs: resolution", "cancelled by user", "submit answer lost"):
        assert reason in phs


def test_images_are_lazy_sized_quoted_and_open_in_new_tab():
    rec = job(1)
    rec.files = [FileRecord("images/a b/ü#1.png", 1, "00", 5)]
    c = parse(render_report([rec], title="t"))
    (img,) = [a for t, a in c.tags if t == "img"]
    assert img["src"] == "images/a%20b/%C3%BC%231.png"
    assert img["loading"] == "lazy" and img["width"] and img["height"]
    (link,) = with_class(c, "a", "thumb")
    assert link["href"] == img["src"] and link["target"] == "_blank"


def test_header_counts_and_totals():
    recs = [job(1, files=2), job(2), job(3, JobState.FAILED, reason="x"), job(4, JobState.QUEUED)]
    html = render_report(recs, title="My run")
    c = parse(html)
    badges = dict(
        re.findall(
            r'<span class="badge s-(\w+)">\w+<b>(\d+)</b></span>', html.split("</header>")[0]
        )
    )
    assert badges == {"done": "2", "failed": "1", "queued": "1"}
    totals = c.text_by_class["totals"][0]
    assert "4 jobs" in totals and "3 files" in totals and "3.0 kB" in totals
    assert 'title="3004 bytes"' in html


def test_card_shows_settings_meta_vars_and_request_id():
    rec = job(
        1,
        inputs={"prompt": "p", "resolution": "3K", "seed": 7},
        meta={"split": "train"},
        vars={"mood": "calm"},
        request_ids=["r-old", "r-new"],
    )
    html = render_report([rec], title="t")
    for text in ("<dt>resolution</dt><dd>3K</dd>", "<dt>seed</dt><dd>7</dd>"):
        assert text in html
    assert "<dt>meta.split</dt><dd>train</dd>" in html and "<dt>vars.mood</dt>" in html
    assert "r-new" in html and "r-old" not in html


def test_two_axis_sweep_is_a_grid_with_hooks_and_data():
    recs = sweep_jobs() + [job(10)]
    html = render_report(recs, title="t")
    c = parse(html)
    (table,) = with_class(c, "table", "grid")
    assert table["data-sweep"] == "0"
    assert c.text_by_class["row-head"] == ["fox", "owl", "cat"]
    assert c.text_by_class["col-head"] == ["ukiyo-e", "bauhaus"]
    assert len(with_class(c, "td", "cell")) == 6
    assert len(with_class(c, "select", "axis-row")) == 1
    assert len(with_class(c, "select", "axis-col")) == 1
    section = with_class(c, "section", "sweep")[0]
    assert section["data-sweep"] == "0"
    # the plain job is a card, the sweep jobs are not
    assert len(with_class(c, "div", "card")) == 1
    data = sweep_data(html, 0)
    assert [f["label"] for f in data["fields"]] == ["subject", "style"]  # prompt is implied
    assert data["fields"][0]["values"] == ["fox", "owl", "cat"]
    assert data["row"] == 0 and data["col"] == 1
    assert [j["v"] for j in data["jobs"]][:3] == [[0, 0], [0, 1], [1, 0]]
    assert data["jobs"][0]["f"][0]["src"] == "images/00001-x-1.png"
    # cell (owl, bauhaus) holds job #4
    cells = html.split('<td class="cell">')[1:]
    assert "#4" in cells[3] and 'src="images/00004-x-1.png"' in cells[3]


def test_third_varying_input_is_stacked_and_filterable():
    recs = []
    for res in ("2K", "3K"):
        for j in sweep_jobs(start=len(recs) + 1):
            j.inputs["resolution"] = res
            recs.append(j)
    html = render_report(recs, title="t")
    data = sweep_data(html, 0)
    assert [f["label"] for f in data["fields"]] == ["subject", "style", "resolution"]
    c = parse(html)
    filters = with_class(c, "select", "filter")
    assert [f["data-field"] for f in filters] == ["0", "1", "2"]
    # each of the 6 cells stacks both resolutions, captioned with the value
    cells = html.split('<td class="cell">')[1:]
    assert len(cells) == 6
    assert all(cell.count('class="item') == 2 for cell in cells)
    assert "#1 · 2K" in html and "#7 · 3K" in html


def test_input_only_sweep_and_single_axis_sweep():
    a = [
        job(i + 1, inputs={"prompt": p, "resolution": r}, sweep=0)
        for i, (p, r) in enumerate((p, r) for p in ("x", "y") for r in ("2K", "3K", "4K"))
    ]
    b = [job(7 + i, inputs={"prompt": "z", "seed": i}, sweep=1) for i in range(3)]
    html = render_report(a + b, title="t")
    c = parse(html)
    assert [t["data-sweep"] for t in with_class(c, "table", "grid")] == ["0"]
    assert c.text_by_class["row-head"] == ["x", "y"]
    assert c.text_by_class["col-head"] == ["2K", "3K", "4K"]
    assert len(with_class(c, "div", "card")) == 3  # sweep 1 varies only the seed: cards
    assert 'id="sweep-1"' in html


def test_repeated_copies_share_a_cell_and_failed_jobs_show_in_cells():
    recs = sweep_jobs()
    extra = job(7, inputs=dict(recs[0].inputs), vars=dict(recs[0].vars), sweep=0, copy=1)
    bad = job(8, JobState.FAILED, inputs=dict(recs[1].inputs), vars=dict(recs[1].vars), sweep=0)
    bad.reason = "server error <500001>"
    html = render_report(recs + [extra, bad], title="t")
    cells = html.split('<td class="cell">')[1:]
    assert cells[0].count("<img") == 2
    assert "server error &lt;500001&gt;" in cells[1] and cells[1].count("<img") == 1


def test_empty_report():
    html = render_report([], title="nothing")
    assert "No jobs." in html and "<h1>nothing</h1>" in html


def test_five_thousand_records_render(tmp_path: Path):
    recs = []
    for s in range(40):  # 40 sweeps of 6 jobs, the rest plain jobs, some failed
        recs += sweep_jobs(sweep=s, start=len(recs) + 1)
    while len(recs) < 5000:
        i = len(recs) + 1
        recs.append(job(i, JobState.FAILED, reason="boom") if i % 50 == 0 else job(i))
    path = write_report(tmp_path, recs, title="big")
    assert path == tmp_path / "report.html"
    html = path.read_text(encoding="utf-8")
    done = sum(r.state is JobState.DONE for r in recs)
    assert html.count("<img") == done  # every done job's image, once
    assert html.count('loading="lazy"') == html.count("<img")
    assert html.count('<table class="grid"') == 40
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def _store_with(tmp_path: Path, recs: list[JobRecord]):
    """A state file holding these records (states, reasons, files, request ids)."""
    from batch_runner.jobs import JobSpec
    from batch_runner.store.state import StateStore

    store = StateStore.open(tmp_path, create=True)
    specs = [JobSpec(r.model, r.inputs, vars=r.vars, sweep=r.sweep) for r in recs]
    store.sync_jobs(specs)
    for r in recs:
        if r.state is JobState.DONE:
            store.record_request_id(r.index, JobState.QUEUED, 1, f"rid-{r.index}")
            for f in r.files:
                store.record_file(r.index, f)
        store.set_state(r.index, r.state, r.reason)
    store.flush()
    return store


def test_report_from_the_state_matches_the_records(tmp_path: Path):
    recs = sweep_jobs() + [job(7), job(8, JobState.FAILED, reason="boom")]
    store = _store_with(tmp_path, recs)
    try:
        path = write_report(tmp_path, store, title="t")
        from_state = path.read_text(encoding="utf-8")
        from_records = render_report(store.jobs(), title="t")
    finally:
        store.close()
    assert from_state == from_records
    assert from_state.count('<table class="grid"') == 1 and "boom" in from_state


def test_large_sections_become_paged_rows(tmp_path: Path, monkeypatch):
    import batch_runner.report.page as report

    monkeypatch.setattr(report, "COMPACT_ABOVE", 4)
    monkeypatch.setattr(report, "ROWS_PAGE", 3)
    recs = sweep_jobs()  # 6 jobs: too many for a grid now
    recs += [job(i, JobState.FAILED, reason="boom") if i == 9 else job(i) for i in range(7, 12)]
    store = _store_with(tmp_path, recs)
    try:
        html = write_report(tmp_path, store, title="t").read_text(encoding="utf-8")
    finally:
        store.close()
    c = parse(html)
    assert '<table class="grid"' not in html and 'class="card' not in html
    rows = [a["id"] for tag, a in c.tags if tag == "tr" and (a.get("id") or "").startswith("job-")]
    assert rows == [f"job-{i}" for i in range(1, 12)]  # every job, once, in order
    assert html.count('<details class="page"') == 4  # 6 = 3+3 and 5 = 3+2
    assert html.count('<details class="page" open>') == 2  # the first page of each section
    assert html.count("<img") == 10 and html.count('loading="lazy"') == 10
    assert "boom" in html and "#7 \u2013 #9" in html
    assert (
        html.count("<th>model</th>") == 4
        and html.replace("<wbr>", "").count(f"<td>{MODEL}</td>") == 11
    )
