"""Benchmarks and their corpus (not part of the installed package)."""
