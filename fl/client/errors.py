"""Errors of the FL client (a sub-root of FLError so callers can catch the package root)."""

from fl.errors import FLError


class ClientError(FLError):
    """Bad configuration or input on the client side, or the chain refused our transaction."""


class TransportError(ClientError):
    """The transport could not reach the chain or the chain answered with an error."""
