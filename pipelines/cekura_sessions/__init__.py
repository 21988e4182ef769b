"""cekura-sessions: Cekura scenario-improvement sessions into DuckDB, nightly."""
