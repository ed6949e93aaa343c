"""End-to-end tests of the docker-compose testnet (run by scripts/docker/e2e.sh, not by pytest).

Only `test_checks.py` is collected by pytest: it proves the runner's assertions can fail.
"""
