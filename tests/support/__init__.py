"""Test support: factories, real servers and proxies, the SSE client, the history
checker and the deliberately broken store. No tests live here."""
