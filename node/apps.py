"""Which Application a chain runs, chosen by genesis.json's `app` field, built in one place.

"fl" is the federated-learning application (fl/app.py); "kv" is consensus's tiny key-value app,
used by benchmarks and tests that measure the chain without model math.
"""

from collections.abc import Sequence

from consensus.app import Application
from node.errors import ConfigError


def build_app(name: str) -> Application:
    match name:
        case "fl":
            from fl.app import FLApp

            return FLApp()
        case "kv":
            from consensus.kvapp import KVApp

            return KVApp()
        case _:
            raise ConfigError(f"app: unknown application {name!r}")


def genesis_app_state(name: str, client_keys: Sequence[bytes]) -> bytes:
    """Canonical genesis app state: for "fl", the client accounts funded and registered."""
    match name:
        case "fl":
            from fl.genesis import default_app_state

            return default_app_state(client_keys)
        case "kv":
            return b""
        case _:
            raise ConfigError(f"app: unknown application {name!r}")
