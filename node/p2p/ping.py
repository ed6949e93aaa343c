"""ping `/ipfs/ping/1.0.0`: the dialer writes 32 random bytes, the listener echoes them,
repeatedly on one stream until either side closes it."""

PROTOCOL_ID = "/ipfs/ping/1.0.0"
PING_BYTES = 32
