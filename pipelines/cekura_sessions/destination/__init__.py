"""Where a night's data goes: a DuckDB file or a PostgreSQL database, and one SQL connection to
either for the SQL we write ourselves."""
