"""Benchmarks and the load generator they share with local streaming runs."""
