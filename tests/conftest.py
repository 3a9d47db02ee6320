"""Shared pytest configuration for couchpoint's tests."""

from __future__ import annotations
