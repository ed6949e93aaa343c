"""A libp2p-compatible asyncio stack: pure codecs and decision logic plus a thin socket shell.

Wire protocols: TCP, multistream-select 1.0, Noise XX, yamux, identify, ping and gossipsub
(/meshsub/1.1.0 and /meshsub/1.2.0).  See docs/ARCHITECTURE.md, section "P2P".
"""
