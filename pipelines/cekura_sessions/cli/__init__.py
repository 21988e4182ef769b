"""The `cekura-sessions` command: argument parsing and the messages people read."""
