"""Command line: ``python -m taskstore demo | serve | tasks ... | dynamodb create-table | sql
create-schema | sql show-schema``, and the
command line of server scripts (:func:`run_cli`). Every command-line concern lives here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from taskstore.mcp.server import McpServer
    from taskstore.store import TaskStore

__all__ = ["main", "run_cli", "serve_main"]


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, which must be above zero."""

    def convert(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="memory://", help="storage URL (default memory://)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    # Defaults live in taskstore.http.serve, imported only when serving.
    parser.add_argument(
        "--read-timeout",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds a connection has to send its whole request (default 60)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        default=None,
        metavar="N",
        help="connections served at once; more get 503 (default 512)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds an idle kept-alive connection stays open between requests (default 15)",
    )


def _server_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The bundled server's limits as :func:`serve_main` takes them (``None``: default)."""
    return {
        "read_timeout_s": args.read_timeout,
        "max_connections": args.max_connections,
        "keepalive_timeout_s": args.keepalive_timeout,
    }


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taskstore", description="Durable MCP tasks for sync Python servers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="walk through the task lifecycle in memory")
    demo.add_argument("--store", default="memory://", help="storage URL (default memory://)")

    serve = commands.add_parser("serve", help="run an MCP server with demo tools")
    _add_serve_arguments(serve)

    dynamodb = commands.add_parser("dynamodb", help="DynamoDB helpers")
    dynamodb_commands = dynamodb.add_subparsers(dest="dynamodb_command", required=True)
    create_table = dynamodb_commands.add_parser("create-table", help="create the task table")
    create_table.add_argument("name")
    create_table.add_argument("--endpoint-url", default=None)
    create_table.add_argument("--region", default=None)

    from taskstore._cli_tasks import add_tasks_parser

    add_tasks_parser(commands)

    sql = commands.add_parser("sql", help="SQL schema helpers (sqlite:///, postgresql://)")
    sql_commands = sql.add_subparsers(dest="sql_command", required=True)
    create_schema = sql_commands.add_parser(
        "create-schema", help="create the store's tables (idempotent)"
    )
    create_schema.add_argument("url", help="the store URL (sqlite:///... or postgresql://...)")
    show_schema = sql_commands.add_parser(
        "show-schema", help="print the SQL that creates the store's tables, nothing else"
    )
    show_schema.add_argument("url", help="the store URL (sqlite:///... or postgresql://...)")
    return parser


def _sql_command(command: str, url: str) -> int:
    """``sql create-schema|show-schema URL``: 0 on success, 2 for a URL of a store without a
    schema or a bad URL, 1 when the database failed."""
    from taskstore._open import backend_url
    from taskstore.backends import backend_class, split_url
    from taskstore.backends._sql import SchemaManagedBackend
    from taskstore.errors import BackendError, ConfigurationError, MissingDependencyError

    try:
        target = backend_url(url)
        cls = backend_class(split_url(target)[0])
        if not isinstance(cls, SchemaManagedBackend):
            raise ConfigurationError(
                f"{split_url(target)[0]}:// stores have no SQL schema (sqlite:/// and "
                f"postgresql:// do)"
            )
        if command == "show-schema":
            sys.stdout.write(cls.schema_sql(target))
            return 0
        cls.create_schema(target)
    except (ConfigurationError, MissingDependencyError) as exc:
        print(f"taskstore sql {command}: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"taskstore sql {command}: the database failed: {exc}", file=sys.stderr)
        return 1
    print(f"taskstore sql create-schema: the schema is in place at {_redacted(url)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        from taskstore.demo import run_demo

        return run_demo(args.store)
    if args.command == "serve":
        # Stateless 2026-07-28 callers without authentication share the anonymous owner: the
        # unguessable task id is their capability (the spec allows it), so serve allows it.
        return serve_main(
            store_url=args.store,
            host=args.host,
            port=args.port,
            store_options={"allow_anonymous": True},
            **_server_limits(args),
        )
    if args.command == "dynamodb":
        from taskstore.backends.dynamodb import DynamoDbBackend

        DynamoDbBackend.create_table(args.name, endpoint_url=args.endpoint_url, region=args.region)
        print(f"created table {args.name}")
        return 0
    if args.command == "sql":
        return _sql_command(args.sql_command, args.url)
    if args.command == "tasks":
        from taskstore._cli_tasks import run_tasks

        return run_tasks(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def run_cli(
    build: Callable[[TaskStore], McpServer],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    store_options: Mapping[str, Any] | None = None,
) -> int:
    """Command line of an MCP server script: ``[--store URL] [--host] [--port]
    [--read-timeout SECONDS] [--max-connections N] [--keepalive-timeout SECONDS]``, like
    ``python -m taskstore serve``. Opens the store, builds the server with ``build(store)``
    and runs :func:`serve_forever`. Returns the exit status (2 for a bad store URL).

    :param store_options: keyword options of :func:`taskstore.open` (e.g.
        ``allow_anonymous=True``).
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_serve_arguments(parser)
    args = parser.parse_args(argv)
    return serve_main(
        args.store,
        args.host,
        args.port,
        build=build,
        store_options=store_options,
        **_server_limits(args),
    )


def serve_main(
    store_url: str = "memory://",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    build: Callable[[TaskStore], McpServer] | None = None,
    store_options: Mapping[str, Any] | None = None,
    read_timeout_s: float | None = None,
    max_connections: int | None = None,
    keepalive_timeout_s: float | None = None,
) -> int:
    """``python -m taskstore serve``: an MCP server with demo tools until Ctrl-C or SIGTERM.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``. Returns the exit status: 0 after a clean shutdown, 1 when the
    address cannot be bound, 2 for a bad store URL.

    :param build: makes the server from the opened store (default: the demo tools).
    :param store_options: keyword options of :func:`taskstore.open`.
    :param read_timeout_s: seconds a connection has to send its whole request (``None``:
        :data:`~taskstore.http.serve.DEFAULT_READ_TIMEOUT_S`).
    :param max_connections: connections served at once, more get 503 (``None``:
        :data:`~taskstore.http.serve.DEFAULT_MAX_CONNECTIONS`).
    :param keepalive_timeout_s: seconds an idle kept-alive connection stays open (``None``:
        :data:`~taskstore.http.serve.DEFAULT_KEEPALIVE_TIMEOUT_S`).
    """
    from taskstore._open import open as open_store
    from taskstore.errors import ConfigurationError

    try:
        store = open_store(store_url, **(store_options or {}))
    except ConfigurationError as exc:
        print(f"taskstore serve: {exc}", file=sys.stderr)
        return 2
    from taskstore.http.serve import (
        DEFAULT_KEEPALIVE_TIMEOUT_S,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_READ_TIMEOUT_S,
        serve_forever,
    )

    def banner(url: str) -> str:
        return _banner(url, store_url, anonymous=store.security.allow_anonymous)

    return serve_forever(
        (build or _demo_server)(store),
        host,
        port,
        banner=banner,
        read_timeout_s=DEFAULT_READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
        max_connections=DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections,
        keepalive_timeout_s=(
            DEFAULT_KEEPALIVE_TIMEOUT_S if keepalive_timeout_s is None else keepalive_timeout_s
        ),
    )


def _redacted(url: str) -> str:
    """``url`` without the password of its user info (banners and logs must not show it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _banner(url: str, store_url: str, *, anonymous: bool) -> str:
    """What ``serve`` tells its user at start-up (on stderr; stdout has only the URL)."""
    lines = [
        f"taskstore: serving MCP 2025-11-25 (sessions) and MCP 2026-07-28 (stateless, "
        f"tasks extension io.modelcontextprotocol/tasks) at {url}",
        f"  store: {_redacted(store_url)}",
        "  2025-11-25 clients (Python mcp<2, TypeScript SDK 1.x): connect with Streamable HTTP "
        "to the URL; tasks via tools/call with a task param, tasks/get|result|list|cancel",
        "  2026-07-28 clients (Python mcp>=2, FastMCP 4, TypeScript SDK 2): the same URL; "
        "declare the tasks extension (fastmcp-tasks, @modelcontextprotocol/ext-tasks) for tasks",
    ]
    if anonymous:
        lines.append(
            "  anonymous 2026-07-28 callers may create tasks: the unguessable task id is the "
            "capability (add authentication to tie tasks to users)"
        )
    return "\n".join(lines)


def _demo_server(store: TaskStore) -> McpServer:
    from taskstore.mcp.demo import register_demo_tools
    from taskstore.mcp.server import McpServer

    server = McpServer(
        store,
        name="taskstore-demo",
        instructions="Demo tools of taskstore: call long_job as a task and poll it.",
    )
    register_demo_tools(server)
    return server


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
