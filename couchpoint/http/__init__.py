"""HTTP layer: the only part of couchpoint that imports Starlette."""
