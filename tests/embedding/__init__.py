"""Tests of couchpoint as a library: hooks, mounting, the pytest plugin, third-party
storage backends and the example app in ``examples/``."""
