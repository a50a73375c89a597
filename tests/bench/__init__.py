"""Benchmarks behind ``make bench``: results tables (Markdown and JSON), not timed tests."""
