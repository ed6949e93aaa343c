"""The federated-learning application: a deterministic state machine plus the FL client."""
