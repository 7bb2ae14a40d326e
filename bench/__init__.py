"""Benchmarks: ``python -m bench`` (see README, "Benchmarks"). Never part of the test suite."""
