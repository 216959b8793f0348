"""The offline pipeline: manifest files -> rows -> jobs -> validated jobs with checked names.

read (by suffix) -> read_yaml / read_csv / read_jsonl -> rows (Entry, Manifest); expand (defaults,
repeats, sweeps); schema (validation); naming (output-name templates, checked here and used again
when files land); load (the whole pipeline, for `run` and `validate` alike).
"""
