-- couchpoint SQLite schema, version 2 (PRAGMA user_version).
-- Version 2 added revision_blobs; running this script on a version 1 file migrates it.
--
-- One file holds every database of a server; rows are keyed by the integer db id.
-- JSON columns hold plain JSON text so applications can query them with SQLite's JSON
-- functions, e.g.:
--   SELECT doc_id, json_extract(body, '$.title') FROM winning_docs WHERE db = 'mydb';
-- Applications must treat these tables as read-only: couchpoint owns every write.
--
-- Run by SQLiteStorage.open() on every open; every statement is idempotent.

BEGIN IMMEDIATE;

-- The server's identity (one row).  uuid: 32 lowercase hex chars, generated once.
-- last_created: the newest dbs.created handed out, so a re-created db always gets a
-- different instance_start_time even if the clock did not move (or moved back).
CREATE TABLE IF NOT EXISTS server (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    uuid         TEXT    NOT NULL,
    last_created INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO server (id, uuid) VALUES (1, lower(hex(randomblob(16))));

-- One row per database.  AUTOINCREMENT: a re-created db never reuses an old id.
-- update_seq: the highest seq handed out (never lowered).  created: creation time in
-- microseconds since the epoch, as text (the db's instance_start_time).
CREATE TABLE IF NOT EXISTS dbs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    update_seq INTEGER NOT NULL DEFAULT 0,
    revs_limit INTEGER NOT NULL DEFAULT 1000,
    created    TEXT    NOT NULL
);

-- One row per document: its current seq, winner and the whole revision tree.
-- leaves: JSON [[rev, deleted], ...] in winning order (winner first).
-- tree:   JSON of couchpoint.revtree.to_json: [[pos, revid, parent_index, flags], ...].
-- winner_rev / deleted: leaves[0], denormalized for SQL queries and the indexes below.
CREATE TABLE IF NOT EXISTS docs (
    db_id      INTEGER NOT NULL,
    doc_id     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    winner_rev TEXT    NOT NULL,
    deleted    INTEGER NOT NULL,
    leaves     TEXT    NOT NULL,
    tree       TEXT    NOT NULL,
    PRIMARY KEY (db_id, doc_id)
);
-- _changes: one row per doc, by seq.
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_seq ON docs (db_id, seq);
-- _all_docs ranges over live docs, and doc_count / doc_del_count.
CREATE INDEX IF NOT EXISTS docs_by_deleted ON docs (db_id, deleted, doc_id);

-- Revision bodies: the document JSON without _id, _rev, _revisions and _deleted.
-- size: length of body in bytes (UTF-8), so sizes can be summed without reading bodies.
CREATE TABLE IF NOT EXISTS revs (
    db_id   INTEGER NOT NULL,
    doc_id  TEXT    NOT NULL,
    rev     TEXT    NOT NULL,
    deleted INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    PRIMARY KEY (db_id, doc_id, rev)
);
-- Lets info() sum body sizes from a small covering index instead of the table.
CREATE INDEX IF NOT EXISTS revs_by_size ON revs (db_id, size);

-- _local documents: id without the "_local/" prefix, integer rev, JSON body.
CREATE TABLE IF NOT EXISTS local_docs (
    db_id  INTEGER NOT NULL,
    doc_id TEXT    NOT NULL,
    rev    INTEGER NOT NULL,
    body   TEXT    NOT NULL,
    PRIMARY KEY (db_id, doc_id)
);

-- Each database's _security object (JSON), once one was stored; no row = never set.
CREATE TABLE IF NOT EXISTS db_security (
    db_id INTEGER PRIMARY KEY,
    body  TEXT    NOT NULL
);

-- Attachment blobs each stored revision references (Revision.blobs, in order; a key may
-- repeat).  The blobs are files beside this file, <stem>-attachments/<key[:2]>/<key>,
-- with key = SHA-256 hex of the bytes; a file no row references is garbage
-- (SQLiteStorage.collect_garbage).  Rows go with their revision's body (drop_revs, a
-- replaced body, a deleted db).  rowid keeps the order.
CREATE TABLE IF NOT EXISTS revision_blobs (
    db_id    INTEGER NOT NULL,
    doc_id   TEXT    NOT NULL,
    rev      TEXT    NOT NULL,
    blob_key TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS revision_blobs_by_rev ON revision_blobs (db_id, doc_id, rev);
-- collect_garbage: is this key referenced anywhere?
CREATE INDEX IF NOT EXISTS revision_blobs_by_key ON revision_blobs (blob_key);

-- Current, non-deleted documents with their winning body (NULL if the body was dropped).
CREATE VIEW IF NOT EXISTS winning_docs AS
    SELECT dbs.name        AS db,
           docs.doc_id     AS doc_id,
           docs.winner_rev AS rev,
           docs.seq        AS seq,
           revs.body       AS body
    FROM docs
    JOIN dbs ON dbs.id = docs.db_id
    LEFT JOIN revs ON revs.db_id = docs.db_id
                  AND revs.doc_id = docs.doc_id
                  AND revs.rev = docs.winner_rev
    WHERE docs.deleted = 0;

PRAGMA user_version = 2;

COMMIT;
