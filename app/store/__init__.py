"""All database I/O: tables, engines, the event store. No SQLAlchemy error leaves here."""
