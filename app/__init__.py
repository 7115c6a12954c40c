"""evstore: an HTTP event store for event-sourced systems."""
