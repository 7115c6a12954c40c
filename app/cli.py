"""The `evstore` command: serve, migrate, openapi.

Every option is also a setting (app/settings.py): an option given on the command line
wins over its EVSTORE_* variable, and Settings validates both the same way. What an
operator can fix (a wrong setting, a database that cannot be reached, does not exist or
is not migrated) is told in one line on stderr, with exit status 1; a wrong option
exits with status 2, as argparse does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings

# Options of `evstore serve`, each a field of Settings.
SERVE_OPTIONS = {"host": str, "port": int, "workers": int, "log_level": str, "log_format": str}


class SettingsError(Exception):
    """A setting failed validation; the message is one line. `in_options`: at least
    one wrong value came from a command-line option."""

    def __init__(self, message: str, in_options: bool) -> None:
        super().__init__(message)
        self.in_options = in_options


def _option_help(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.default if field.default is not None else "none"
    return f"{field.description} (EVSTORE_{name.upper()}, default {default})"


def build_parser() -> argparse.ArgumentParser:
    url = Settings.model_fields["database_url"]
    url_help = f"The database: EVSTORE_DATABASE_URL ({url.description}), default {url.default}."
    parser = argparse.ArgumentParser(
        prog="evstore",
        description="An HTTP event store. Settings come from EVSTORE_* variables "
        "(see the README's Configuration); options override them.",
        epilog=url_help,
    )
    parser.add_argument("--version", action="version", version=f"evstore {version('evstore')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="migrate (EVSTORE_MIGRATE_ON_START, default true), then serve HTTP",
        description="Migrate the database unless EVSTORE_MIGRATE_ON_START=false (then "
        "refuse a schema that is not current), then serve HTTP.",
        epilog=url_help,
    )
    serve.set_defaults(parser=serve)  # so that a wrong option is reported under its usage
    for name, kind in SERVE_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        serve.add_argument(
            flag, dest=name, type=kind, metavar=name.upper(), help=_option_help(name)
        )
    commands.add_parser(
        "migrate",
        help="bring the database schema to the newest revision",
        description="Bring the database schema to the newest revision.",
        epilog=url_help,
    )
    spec = commands.add_parser(
        "openapi", help="print the OpenAPI document", description="Print the OpenAPI document."
    )
    spec.add_argument("--output", type=Path, help="write it to this file instead of stdout")
    return parser


def load_settings(options: dict[str, Any]) -> Settings:
    """Settings from the environment, with the given options on top. Raises
    SettingsError naming each wrong value: `--port` for an option, EVSTORE_PORT for a
    variable; never the database URL's value (it may carry a password)."""
    try:
        return Settings(**options)
    except ValidationError as e:
        problems, names = [], set()
        for error in e.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            names.add(name)
            where = "--" + name.replace("_", "-") if name in options else f"EVSTORE_{name.upper()}"
            given = "" if name == "database_url" else f"={error.get('input')!r}"
            reason = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}{given}: {reason}")
        raise SettingsError("; ".join(problems), in_options=bool(names & set(options))) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = {n: v for n in SERVE_OPTIONS if (v := getattr(args, n, None)) is not None}
    try:
        settings = load_settings(options)
    except SettingsError as e:
        if e.in_options:
            getattr(args, "parser", parser).error(str(e))  # exits 2
        return fail(str(e))
    if args.command == "migrate":
        return migrate(settings)
    if args.command == "openapi":
        return openapi(settings, args.output)
    # uvicorn's workers read the settings again: they must see the options too.
    for name, value in options.items():
        os.environ[f"EVSTORE_{name.upper()}"] = str(value)
    return serve(settings)


def fail(message: str) -> int:
    print(f"evstore: {message}", file=sys.stderr)
    return 1


def prepare_database(settings: Settings, migrate: bool) -> str | None:
    """Migrate or check the schema; None, or the one line that says what is wrong."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.domain.errors import EvstoreError, SchemaOutOfDateError
    from app.store.migrations import check_schema, display_url, upgrade

    url = settings.database_url
    try:
        if migrate:
            upgrade(url)
        else:
            check_schema(url)
    except SchemaOutOfDateError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            return f"the database {display_url(url)} does not exist; {e}"
        return f"{display_url(url)}: {e}"
    except EvstoreError as e:
        return str(e)
    except SQLAlchemyError as e:  # not a connection failure: the database refused
        reason = next((line for line in str(getattr(e, "orig", e)).splitlines() if line), "")
        return f"cannot migrate the database {display_url(url)}: {reason.strip()}"
    return None


def migrate(settings: Settings) -> int:
    from app.store.migrations import display_url

    problem = prepare_database(settings, migrate=True)
    if problem:
        return fail(problem)
    print(f"migrated {display_url(settings.database_url)}", file=sys.stderr)
    return 0


def openapi(settings: Settings, output: Path | None) -> int:
    from app.main import create_app

    text = json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def serve(settings: Settings) -> int:
    import uvicorn

    from app.api.log_format import log_config
    from app.server import connection_limit

    # Once, before any worker starts; the workers then only check the schema.
    problem = prepare_database(settings, migrate=settings.migrate_on_start)
    if problem:
        return fail(problem)
    os.environ["EVSTORE_MIGRATE_ON_START"] = "false"
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # httptools with the header limits uvicorn only enforces for h11 (app/server.py)
        http="app.server:LimitedHttpToolsProtocol",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=connection_limit(settings),
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format),
        access_log=False,  # ObserveMiddleware writes the access lines
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
