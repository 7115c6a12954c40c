"""HTTP: routers, wire models, preconditions, request bodies and problem details."""
