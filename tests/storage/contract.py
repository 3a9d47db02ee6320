"""The storage contract suite, now packaged as :mod:`couchpoint.testing.storage_contract`
(so third-party backends can run it).  Re-exported here for couchpoint's own tests."""

from __future__ import annotations

from couchpoint.testing.storage_contract import (
    Boom,
    StorageContract,
    StorageFactory,
    blob_info_of,
    blob_write_of,
    conflicted_tree,
    ids,
    leaf_rev,
    linear_tree,
    put,
    put_ids,
    read_all,
    stream,
    write_of,
)

__all__ = [
    "Boom",
    "StorageContract",
    "StorageFactory",
    "blob_info_of",
    "blob_write_of",
    "conflicted_tree",
    "ids",
    "leaf_rev",
    "linear_tree",
    "put",
    "put_ids",
    "read_all",
    "stream",
    "write_of",
]
