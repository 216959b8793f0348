"""The command line: main (argument parsing, exit codes), commands (one function per command),
token (where the API token comes from), console (the event loop, printing), formatting (text)."""
