"""`batch-runner serve RUN_DIR`: a local, read-mostly web view of a run directory, live while
a run writes it (the state files are read read-only; keep/reject marks are the one write).
`view.py` reads, `app.py` serves (JSON first: the page in `page.py` is drawn from it),
`sync.py` writes the marks into metadata.jsonl and report.html when no run holds the folder."""
