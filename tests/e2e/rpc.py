"""Blocking HTTP/JSON calls to one node's RPC (docs/api.md) for the e2e runner.

Every call has a short timeout: a paused or disconnected node must read as "no answer", not
hang the runner.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 3.0
BLOCKS_PAGE_MAX = 100


class RpcError(Exception):
    """The node did not answer, or answered with an error."""


@dataclass(frozen=True, slots=True)
class NodeRpc:
    name: str
    url: str

    def get(self, path: str) -> tuple[bytes, dict[str, str]]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=TIMEOUT_S) as answer:
                return answer.read(), dict(answer.headers.items())
        except urllib.error.HTTPError as exc:
            raise RpcError(f"{self.name} {path}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RpcError(f"{self.name} {path}: {exc}") from None

    def json(self, path: str) -> Any:
        body, _ = self.get(path)
        try:
            return json.loads(body)
        except ValueError:
            raise RpcError(f"{self.name} {path}: not JSON") from None

    def height(self) -> int | None:
        try:
            return int(self.json("/status")["height"])
        except (RpcError, KeyError, TypeError, ValueError):
            return None

    def status(self) -> dict[str, Any] | None:
        try:
            answer = self.json("/status")
        except RpcError:
            return None
        return answer if isinstance(answer, dict) else None

    def blocks(self, first: int, last: int) -> list[dict[str, Any]]:
        """Block summaries first..last inclusive, paged."""
        out: list[dict[str, Any]] = []
        height = first
        while height <= last:
            limit = min(BLOCKS_PAGE_MAX, last - height + 1)
            page = self.json(f"/blocks?from={height}&limit={limit}")
            items = page.get("blocks", page) if isinstance(page, dict) else page
            if not isinstance(items, list) or not items:
                raise RpcError(f"{self.name}: no blocks from {height}")
            out.extend(items)
            height += len(items)
        return out

    def tx(self, tx_hash: str) -> dict[str, Any] | None:
        try:
            answer = self.json(f"/txs/{tx_hash}")
        except RpcError:
            return None
        return answer if isinstance(answer, dict) else None

    def model(self, version: int | None = None) -> tuple[int, str]:
        """(version, model hash) from the X-Model-* headers of GET /model[/version]."""
        path = "/model" if version is None else f"/model/{version}"
        _, headers = self.get(path)
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            return int(lowered["x-model-version"]), lowered["x-model-hash"]
        except (KeyError, ValueError):
            raise RpcError(f"{self.name} {path}: no X-Model-Version/X-Model-Hash") from None

    def update_record(self, tx_hash: str) -> Any:
        """The "value" of `GET /updates/{tx}` (the app's record of an FL update), or None."""
        try:
            answer = self.json(f"/updates/{tx_hash}")
        except RpcError:
            return None
        return answer.get("value") if isinstance(answer, dict) else None
