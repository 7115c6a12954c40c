"""Live subscriptions: the broadcaster and the SSE tail. No SQL here."""
