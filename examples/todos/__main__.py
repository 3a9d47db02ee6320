"""``python -m examples.todos``: serve the example app with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from examples.todos.app import create_todo_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.todos", description=__doc__)
    parser.add_argument("--db", default="todos.sqlite3", help="the app's SQLite file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="a user (repeatable)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    users = dict(item.split(":", 1) for item in args.user) or {"alice": "alice", "bob": "bob"}
    app = create_todo_app(args.db, users)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
