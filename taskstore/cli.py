"""Command line: ``python -m taskstore demo | serve | dynamodb create-table``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taskstore", description="Durable MCP tasks for sync Python servers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="walk through the task lifecycle in memory")
    demo.add_argument("--store", default="memory://", help="storage URL (default memory://)")

    serve = commands.add_parser("serve", help="run an MCP server with demo tools")
    serve.add_argument("--store", default="memory://", help="storage URL (default memory://)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    dynamodb = commands.add_parser("dynamodb", help="DynamoDB helpers")
    dynamodb_commands = dynamodb.add_subparsers(dest="dynamodb_command", required=True)
    create_table = dynamodb_commands.add_parser("create-table", help="create the task table")
    create_table.add_argument("name")
    create_table.add_argument("--endpoint-url", default=None)
    create_table.add_argument("--region", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        from taskstore.demo import run_demo

        return run_demo(args.store)
    if args.command == "serve":
        from taskstore.wsgi import serve_main

        return serve_main(store_url=args.store, host=args.host, port=args.port)
    if args.command == "dynamodb":
        from taskstore.backends.dynamodb import DynamoDbBackend

        DynamoDbBackend.create_table(args.name, endpoint_url=args.endpoint_url, region=args.region)
        print(f"created table {args.name}")
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
