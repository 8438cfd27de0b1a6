"""Settings shared by the explorer tests (their fixtures are in tests/explore/conftest.py)."""

SMALL = {"reference": 200, "factor_samples": 300}  # quick quantiles and unit-factor fit
