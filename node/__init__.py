"""The fedchain daemon shell: wiring and every piece of I/O (network, disk, clock, signals)."""
