"""``python -m couchpoint``: the same as the ``couchpoint`` command."""

from __future__ import annotations

from couchpoint.cli import main

if __name__ == "__main__":
    main(prog_name="couchpoint")
