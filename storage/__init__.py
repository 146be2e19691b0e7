"""Tables, engines and migrations (SQLite WAL by default, PostgreSQL for scale)."""
