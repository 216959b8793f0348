"""Files on disk: downloads, names, embedded parameters, metadata.jsonl."""
