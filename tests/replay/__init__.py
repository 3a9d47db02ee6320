"""Replay of recorded CouchDB/PouchDB replication traffic against couchpoint (docs/replay.md)."""
