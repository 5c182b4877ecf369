"""Benchmarks run by ``make bench``; each prints its figures and ratios to a reference."""
