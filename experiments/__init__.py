"""Sweep runner, paper reproductions and benchmarks (run from the repository root)."""
