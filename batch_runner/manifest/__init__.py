"""The offline pipeline: manifest files -> rows -> jobs -> validated jobs with checked names.

read (by suffix) -> read_yaml / read_csv / read_jsonl / read_txt -> rows (Entry, Manifest); expand
(models per job, defaults, model_defaults, repeats, sweeps); schema (validation per model, with
the schemas the caller resolved); schema_file (`--schema`); naming (output-name templates,
checked here and used again when files land); load (the whole pipeline, for `run` and
`validate` alike).
"""
