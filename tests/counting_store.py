"""A real SQLite store that counts the reads asked of it (tests of how many queries a path
makes: edges, scoring many runs)."""

from __future__ import annotations

from exporters.stores.sqlite import SQLiteStore


class CountingStore(SQLiteStore):
    """:class:`SQLiteStore`, with ``reads``: how many ``read``/``read_columns`` calls so far."""

    reads = 0

    def read(self, *args, **kwargs):
        self.reads += 1
        return super().read(*args, **kwargs)

    def read_columns(self, *args, **kwargs):
        self.reads += 1
        return super().read_columns(*args, **kwargs)
