"""A deterministic, seeded simulator for the engine (exempt from the purity rule: it owns a
`random.Random(seed)` and a virtual clock).  See runner.py for the theory of operation."""
