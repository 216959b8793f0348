"""The SQLite state file: reads, the group-commit writer, migrations."""
