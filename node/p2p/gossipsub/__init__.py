"""gossipsub v1.1/v1.2: RPC codec, message cache, peer scoring, the router core and its shell."""
