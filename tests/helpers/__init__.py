"""Helpers shared by the test suite, imported as ``helpers.<module>`` (``tests/`` is on the path
through its root conftest). Fixtures stay in ``conftest.py`` files; plain functions, classes and
constants that several test modules use live here, so no test module imports another."""
