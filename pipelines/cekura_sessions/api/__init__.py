"""Cekura over HTTP: transport, retry policy, answer classification, page shapes, the client.
No dlt, Arrow or DuckDB here."""
