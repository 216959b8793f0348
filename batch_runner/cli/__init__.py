"""The command line: argument parsing, one function per command, output formatting."""
