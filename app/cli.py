"""The `evstore` command: serve, migrate, openapi."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate, then serve HTTP (settings: EVSTORE_*)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    commands.add_parser("migrate", help="bring the database schema to the newest revision")
    spec = commands.add_parser("openapi", help="print the OpenAPI document")
    spec.add_argument("--output", type=Path, help="write it to this file instead")
    args = parser.parse_args(argv)

    settings = Settings()
    if args.command == "migrate":
        from sqlalchemy.engine import make_url

        from app.store.migrations import upgrade

        upgrade(settings.database_url)
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        print(f"migrated {shown}", file=sys.stderr)
        return 0
    if args.command == "openapi":
        from app.main import create_app

        text = json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    return _serve(settings, args.host, args.port, args.workers)


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> int:
    import uvicorn

    from app.api.log_format import log_config
    from app.domain.errors import EvstoreError
    from app.store.migrations import check_schema, upgrade

    try:
        if settings.migrate_on_start:
            upgrade(settings.database_url)  # once, before any worker starts
        else:
            check_schema(settings.database_url)
    except EvstoreError as e:
        print(f"evstore: {e}", file=sys.stderr)
        return 1
    # Workers only check the schema: migrations ran above, exactly once.
    os.environ["EVSTORE_MIGRATE_ON_START"] = "false"
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        loop="uvloop",
        # httptools with the header limits uvicorn only enforces for h11 (app/server.py)
        http="app.server:LimitedHttpToolsProtocol",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_concurrent_connections,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # ObserveMiddleware writes the access lines
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
