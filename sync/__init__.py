"""The sync engine, the ingest pipeline and scheduling."""
