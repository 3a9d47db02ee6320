"""Docs do not drift from the code: every route is in docs/api.md (architecture habit 12)."""

from __future__ import annotations

from pathlib import Path

from couchpoint.http import routes, server_api

API_DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")


def test_every_database_endpoint_is_documented() -> None:
    missing = [name for name in routes.DB_ENDPOINTS if f"`/{{db}}/{name}`" not in API_DOC]
    assert missing == []


def test_every_server_endpoint_is_documented() -> None:
    missing = [name for name in server_api.ENDPOINTS if f"`/{name}`" not in API_DOC]
    assert missing == []


def test_rules_page_exists_and_names_the_open_choices() -> None:
    rules = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    for topic in ("Sequence format", "Raw `+` in a path", "`_local` documents", "`_compact`"):
        assert topic in rules
