"""An asyncio client for the node's RPC (used by the CLI, the FL client transport and tests).

Every non-2xx answer raises RpcError carrying the HTTP status and the server's error code and
reason, so callers show people the node's own explanation.
"""

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from node.errors import NodeError


class RpcError(NodeError):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(f"HTTP {status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes
    headers: dict[str, str]


class RpcClient:
    def __init__(self, url: str, timeout_ms: int = 30_000) -> None:
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self._url

    async def __aenter__(self) -> "RpcClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else None
        try:
            async with self._sess().request(
                method, self._url + path, data=body, params=params, headers=headers
            ) as resp:
                data = await resp.read()
                return resp.status, data, dict(resp.headers)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RpcError(0, "unreachable", f"{self._url}: {type(exc).__name__}: {exc}") from None

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        status, data, _ = await self._request("GET", path, params=params)
        return _json_or_raise(status, data)

    async def get_binary(self, path: str) -> Binary:
        status, data, headers = await self._request("GET", path)
        if status >= 300:
            _json_or_raise(status, data)
        return Binary(data, headers)

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json("/status")
        return result

    async def health(self) -> bool:
        try:
            status, _, _ = await self._request("GET", "/health")
        except RpcError:
            return False
        return status == 200

    async def submit_tx(self, tx: bytes) -> str:
        status, data, _ = await self._request("POST", "/txs", body=tx)
        result = _json_or_raise(status, data)
        return str(result["hash"])

    async def tx(self, tx_hash: str) -> dict[str, Any] | None:
        status, data, _ = await self._request("GET", f"/txs/{tx_hash}")
        if status == 404:
            return None
        result: dict[str, Any] = _json_or_raise(status, data)
        return result

    async def block(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json(f"/blocks/{height}")
        return result

    async def query(self, path: str, data: bytes = b"") -> Binary:
        return await self.get_binary(f"/query/{path}?data={data.hex()}")

    async def wait_for_height(self, height: int, timeout_ms: int, poll_ms: int = 100) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            try:
                current = int((await self.status())["height"])
            except RpcError:
                current = 0
            if current >= height:
                return current
            if loop.time() > deadline:
                raise RpcError(0, "timeout", f"height {height} not reached (at {current})")
            await asyncio.sleep(poll_ms / 1000)


def _json_or_raise(status: int, data: bytes) -> Any:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"error": "bad_response", "reason": data[:200].decode("utf-8", "replace")}
    if status >= 300:
        if isinstance(body, dict):
            raise RpcError(status, str(body.get("error", "")), str(body.get("reason", "")))
        raise RpcError(status, "error", str(body)[:200])
    return body
