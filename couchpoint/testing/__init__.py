"""Test helpers for projects that embed couchpoint or write storage backends.

* :mod:`couchpoint.testing.plugin` -- a pytest plugin (registered through the ``pytest11``
  entry point, so installing couchpoint is enough) with fixtures for an in-process
  couchpoint: ``couchpoint_storage``, ``couchpoint_options``, ``couchpoint_app``,
  ``couchpoint_client`` and ``couchpoint_db``.
* :mod:`couchpoint.testing.storage_contract` -- the storage conformance suite
  (:class:`~couchpoint.testing.storage_contract.StorageContract`) to run against a
  third-party :class:`~couchpoint.storage.base.Storage`.

Both need ``pytest`` and ``pytest-asyncio``; nothing here is imported by ``import
couchpoint``.
"""
