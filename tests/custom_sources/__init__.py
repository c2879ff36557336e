"""Custom source classes for ``tests/test_custom_sources.py``, loaded as a user's would be.

``tests/`` is on ``sys.path`` under pytest (and on ``PYTHONPATH`` in the doctor's subprocess),
so the configuration names them ``custom_sources.meters:Class``.
"""
