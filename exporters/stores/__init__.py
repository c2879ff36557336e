"""Stores, chosen by URL: ``sqlite:///rel/path.db``, ``sqlite:////abs/path.db``,
``influxdb://host:8086/DBNAME`` (``influxdb+https://`` for TLS).

Credentials never appear in the URL: InfluxDB reads ``TUBAI_INFLUXDB_TOKEN`` or
``TUBAI_INFLUXDB_USERNAME``/``TUBAI_INFLUXDB_PASSWORD`` from the environment.
"""

from __future__ import annotations

import os

from exporters.errors import UsageError
from exporters.stores.base import Store

DEFAULT_STORE = "sqlite:///data/tubai.db"


def default_store_url() -> str:
    """``TUBAI_STORE`` from the environment, else the embedded default."""
    return os.environ.get("TUBAI_STORE") or DEFAULT_STORE


def open_store(url: str | None = None) -> Store:
    """Open the store named by ``url`` (default: :func:`default_store_url`)."""
    url = url or default_store_url()
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise UsageError(
            f"store URL {url!r} has no scheme: use sqlite:///data/tubai.db "
            "or influxdb://host:8086/DBNAME"
        )
    if scheme == "sqlite":
        from exporters.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme in ("influxdb", "influxdb+http", "influxdb+https"):
        from exporters.stores.influxdb import InfluxDBStore

        return InfluxDBStore.from_url(url)
    raise UsageError(
        f"store URL {url!r} has an unknown scheme {scheme!r}: use sqlite:///PATH "
        "or influxdb://host:8086/DBNAME"
    )


__all__ = ["DEFAULT_STORE", "Store", "default_store_url", "open_store"]
