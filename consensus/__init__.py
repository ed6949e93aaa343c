"""Chain primitives and the Tendermint BFT engine.

Everything in this package is pure: no asyncio, sockets, clocks, os or unseeded randomness.
Time, randomness and signing keys are injected by the shell (see node/).
"""
