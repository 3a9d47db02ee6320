"""A FastAPI todo app whose own SQLite table syncs with PouchDB through couchpoint
(see ``README.md`` beside this file)."""
