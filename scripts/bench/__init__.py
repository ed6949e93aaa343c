"""Helpers shared by the end-to-end benchmark scripts (scripts/bench_*.py).

Importable as `bench` once scripts/ is on sys.path; the scripts put it there themselves.
Nothing here is timed by a test: tests/bench only checks that both sides of a comparison run
the identical workload.
"""
