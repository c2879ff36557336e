"""A module whose own import fails: it needs a package that is not installed."""

from __future__ import annotations

import tubai_missing_dependency  # noqa: F401
