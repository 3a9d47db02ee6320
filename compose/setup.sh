#!/bin/sh
# One-shot setup for compose.yaml (runs in curlimages/curl; plain POSIX sh + curl).
#
# Waits for couchpoint and CouchDB, creates the database $DB_NAME on both, `_users` and
# `_replicator` on CouchDB, and puts two continuous replications into CouchDB's
# `_replicator`: couchpoint -> CouchDB and CouchDB -> couchpoint. Both endpoints log in
# with COUCHDB_USER / COUCHDB_PASSWORD (couchpoint gets the same admin in compose.yaml).
# Safe to run again: what exists already is left as it is.
set -eu

COUCHPOINT_URL=${COUCHPOINT_URL:-http://couchpoint:5984}
COUCHDB_URL=${COUCHDB_URL:-http://couchdb:5984}
COUCHDB_USER=${COUCHDB_USER:-admin}
COUCHDB_PASSWORD=${COUCHDB_PASSWORD:-password}
DB_NAME=${DB_NAME:-app}
WAIT_SECONDS=${WAIT_SECONDS:-120}

body=$(mktemp)
trap 'rm -f "$body"' EXIT

log() { printf 'setup: %s\n' "$*"; }
fail() {
    printf 'setup: %s\n' "$*" >&2
    exit 1
}

# call METHOD URL [JSON]: prints the HTTP status ("000" if nothing answered);
# the response body is left in $body.
call() {
    if [ $# -ge 3 ]; then
        set -- -X "$1" -H 'Content-Type: application/json' --data-binary "$3" "$2"
    else
        set -- -X "$1" "$2"
    fi
    curl -sS --connect-timeout 5 --max-time 30 -u "$COUCHDB_USER:$COUCHDB_PASSWORD" \
        -o "$body" -w '%{http_code}' "$@"
}

# wait_for NAME URL
wait_for() {
    waited=0
    until [ "$(call GET "$2/" 2>/dev/null || true)" = 200 ]; do
        waited=$((waited + 1))
        [ "$waited" -lt "$WAIT_SECONDS" ] || fail "$1 did not answer at $2 within ${WAIT_SECONDS}s"
        sleep 1
    done
    log "$1 is up at $2"
}

# create_db NAME URL DB
create_db() {
    status=$(call PUT "$2/$3") || true
    case $status in
        201 | 202) log "created $3 on $1" ;;
        412) log "$3 already exists on $1" ;;
        *) fail "PUT $2/$3 ($1): HTTP $status $(cat "$body")" ;;
    esac
}

json_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

# endpoint URL: a replication endpoint with basic auth, as CouchDB 3.2+ reads it.
endpoint() {
    printf '{"url": "%s", "auth": {"basic": {"username": "%s", "password": "%s"}}}' \
        "$(json_escape "$1")" "$(json_escape "$COUCHDB_USER")" "$(json_escape "$COUCHDB_PASSWORD")"
}

# replicate DOC_ID SOURCE_URL TARGET_URL: a continuous replication run by CouchDB.
replicate() {
    doc=$(printf '{"source": %s, "target": %s, "continuous": true}' "$(endpoint "$2")" "$(endpoint "$3")")
    status=$(call PUT "$COUCHDB_URL/_replicator/$1" "$doc") || true
    case $status in
        201 | 202) log "replication $1: $2 -> $3" ;;
        409) log "replication $1 already exists (delete it from _replicator to change it)" ;;
        *) fail "PUT $COUCHDB_URL/_replicator/$1: HTTP $status $(cat "$body")" ;;
    esac
}

wait_for couchpoint "$COUCHPOINT_URL"
wait_for CouchDB "$COUCHDB_URL"

create_db CouchDB "$COUCHDB_URL" _users
create_db CouchDB "$COUCHDB_URL" _replicator
create_db CouchDB "$COUCHDB_URL" "$DB_NAME"
create_db couchpoint "$COUCHPOINT_URL" "$DB_NAME"

replicate couchpoint-to-couchdb "$COUCHPOINT_URL/$DB_NAME" "$COUCHDB_URL/$DB_NAME"
replicate couchdb-to-couchpoint "$COUCHDB_URL/$DB_NAME" "$COUCHPOINT_URL/$DB_NAME"

log "done: $DB_NAME replicates both ways between $COUCHPOINT_URL and $COUCHDB_URL"
