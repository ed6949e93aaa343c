"""The node's HTTP/JSON + WebSocket API (aiohttp); docs/api.md is its manual.

Handlers are thin: they parse and bound the request, ask the `RpcBackend` (the running node)
and shape the answer.  Every refusal is a 4xx with `{"error": CODE, "reason": TEXT}`; nothing a
client sends can raise out of a handler or change state unless it is a valid transaction the
mempool accepted.  Numbers in paths and queries are ASCII digits of bounded length (Python's
int() of 5,000 digits raises, and str.isdigit() accepts '²').

Budgets (node/rpc/limits.py): connections in all and per address, header and body deadlines,
request bodies per request and in flight together.  WebSockets: at most `ws_clients_max` in all
and `ws_clients_per_ip_max` per address; a newcomer beyond either takes the slot of the oldest
connection of its own address, or else of the address holding the most, so a crowd of
well-behaved but never-leaving clients cannot lock newcomers out; a client that stops
answering pings is closed after `ws_idle_timeout_ms` (aiohttp's heartbeat).
"""

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from consensus.app import QueryResult
from consensus.codec import DecodeLimits, decode
from consensus.errors import CodecError
from node.allocator import FreeMemoryReleaser
from node.config import RpcConfig
from node.errors import CorruptBlockError, MempoolError
from node.events import EventBus, Subscription
from node.logging import log_event
from node.rpc.keyed import ShapeError, keyed
from node.rpc.limits import (
    BodyBudget,
    BodyTooLarge,
    ConnectionGuard,
    GuardedSite,
    RpcLimits,
    read_body,
)
from node.store.sqlite import BlockStore, StoredBlock

log = logging.getLogger(__name__)

HASH_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# Heights, counts and versions: ASCII digits only, at most 18 (fits int64; int() of a huge
# string raises ValueError past 4,300 digits).
NUMBER = re.compile(r"^[0-9]{1,18}$")
EVENT_KINDS_MAX = 32
EVENT_KIND_CHARS_MAX = 64
QUERY_PATH = re.compile(r"^[a-z0-9_/.-]{1,128}$")
QUERY_DATA_CHARS_MAX = 4096
BLOCKS_PAGE_MAX = 100
BATCH_TXS_MAX = 10_000
MODEL_LIMITS = DecodeLimits(array_items_max=10_000_000)


# HTTP status per mempool refusal code.
_MEMPOOL_STATUS = {
    "malformed": 400,
    "check_tx": 400,
    "too_large": 413,
    "duplicate": 409,
    "full": 503,
    "nonce_gap": 400,
    "sender_limit": 429,
}


class RpcBackend(Protocol):
    """What the RPC layer needs from the running node."""

    @property
    def store(self) -> BlockStore: ...

    @property
    def events(self) -> EventBus: ...

    def status(self) -> dict[str, Any]: ...

    def healthy(self) -> bool: ...

    async def submit_tx(self, tx: bytes) -> bytes: ...

    def tx_pending(self, tx_hash: bytes) -> bool: ...

    def query(self, path: str, data: bytes) -> QueryResult: ...

    def block_json(self, block: StoredBlock) -> dict[str, Any]: ...

    def validators_json(self) -> dict[str, Any]: ...

    def tx_bytes(self, height: int, index: int) -> bytes | None: ...


def error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def limits_from_config(cfg: RpcConfig) -> RpcLimits:
    return RpcLimits(
        body_bytes_max=cfg.body_bytes_max,
        bodies_in_flight_bytes_max=cfg.bodies_in_flight_bytes_max,
        connections_max=cfg.connections_max,
        connections_per_ip_max=cfg.connections_per_ip_max,
        header_timeout_ms=cfg.header_timeout_ms,
        body_timeout_ms=cfg.body_timeout_ms,
        keepalive_timeout_ms=cfg.keepalive_timeout_ms,
    )


@dataclass(slots=True)
class _WsClient:
    ip: str
    sub: Subscription


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# A request body at least this large is followed by a (rate-limited) return of free heap pages.
RELEASE_AFTER_BODY_BYTES = 4 * 1024 * 1024


class RpcServer:
    def __init__(
        self, backend: RpcBackend, body_bytes_max: int, cfg: RpcConfig | None = None
    ) -> None:
        self._backend = backend
        self._cfg = cfg if cfg is not None else RpcConfig(body_bytes_max=body_bytes_max)
        self._body_bytes_max = self._cfg.body_bytes_max
        self._limits = limits_from_config(self._cfg)
        self.guard = ConnectionGuard(self._limits)
        self._budget: BodyBudget | None = None
        # In connection order (oldest first): eviction picks from the front.
        self._websockets: dict[web.WebSocketResponse, _WsClient] = {}
        self.ws_evicted = 0
        # A large body is read into an mmap but then copied, decoded and checked on the heap,
        # which glibc keeps (node/allocator.py): after such a request, hand free pages back.
        # The 30-minute soak saw a node keep ~26 MiB after each wave of large uploads.
        self.memory_releaser = FreeMemoryReleaser(threshold_bytes=RELEASE_AFTER_BODY_BYTES)

    @property
    def budget(self) -> BodyBudget:
        if self._budget is None:  # created on the loop that serves
            self._budget = BodyBudget(self._limits.bodies_in_flight_bytes_max)
        return self._budget

    async def start(self, host: str, port: int) -> web.AppRunner:
        """Serve on host:port with the connection guard; the caller cleans the runner up."""
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._limits.keepalive_timeout_ms / 1000,
            # An unread body (refused or timed out) is not drained: the connection closes.
            lingering_time=0,
        )
        await runner.setup()
        await GuardedSite(runner, host, port, self.guard).start()
        return runner

    def app(self) -> web.Application:
        guard = self.guard
        releaser = self.memory_releaser

        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            guard.request_started(request.protocol)
            try:
                response: web.StreamResponse = await handler(request)
                return response
            finally:
                guard.request_finished(request.protocol)
                releaser.freed(request.content_length or 0)

        app = web.Application(client_max_size=self._body_bytes_max, middlewares=[track, _errors])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/status", self.status)
        r.add_get("/blocks", self.blocks)
        r.add_get("/blocks/latest", self.latest_block)
        r.add_get("/blocks/{height}", self.block)
        r.add_get("/blocks/{height}/raw", self.block_raw)
        r.add_post("/txs", self.submit_tx)
        r.add_post("/txs/batch", self.submit_batch)
        r.add_get("/txs/{hash}", self.tx)
        r.add_get("/validators", self.validators)
        r.add_get("/model", self.model)
        r.add_get("/model/{version}", self.model)
        r.add_get("/round", self.app_query_json)
        r.add_get("/params", self.app_query_json)
        r.add_get("/accounts/{key}", self.app_query_json)
        r.add_get("/updates/{key}", self.app_query_json)
        r.add_get("/gov/{rest:.*}", self.app_query_json)
        r.add_get("/query/{path:.+}", self.query)
        r.add_get("/ws", self.websocket)
        app.on_shutdown.append(self._close_websockets)
        return app

    async def health(self, _request: web.Request) -> web.Response:
        if self._backend.healthy():
            return web.json_response({"ok": True})
        return error(503, "unavailable", "node has not committed a block and is not syncing")

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(self._backend.status(), dumps=_dumps)

    def _height(self, request: web.Request) -> int | web.Response:
        raw = request.match_info["height"]
        if not NUMBER.match(raw):
            return error(400, "bad_height", f"height must be a positive integer, got {raw[:40]!r}")
        height = int(raw)
        if height < 1 or height > self._backend.store.height:
            return error(404, "not_found", f"no block at height {height}")
        return height

    async def block(self, request: web.Request) -> web.Response:
        height = self._height(request)
        if isinstance(height, web.Response):
            return height
        stored = self._backend.store.block(height)
        if stored is None:
            return error(404, "not_found", f"block {height} is not stored here (pruned?)")
        return web.json_response(self._backend.block_json(stored), dumps=_dumps)

    async def block_raw(self, request: web.Request) -> web.Response:
        height = self._height(request)
        if isinstance(height, web.Response):
            return height
        stored = self._backend.store.block(height)
        if stored is None:
            return error(404, "not_found", f"block {height} is not stored here")
        return web.Response(
            body=stored.data,
            content_type="application/octet-stream",
            headers={"X-Block-Hash": stored.hash.hex()},
        )

    async def latest_block(self, _request: web.Request) -> web.Response:
        height = self._backend.store.height
        stored = self._backend.store.block(height) if height else None
        if stored is None:
            return error(404, "not_found", "no block committed yet")
        return web.json_response(self._backend.block_json(stored), dumps=_dumps)

    async def blocks(self, request: web.Request) -> web.Response:
        """`GET /blocks?from=H&limit=N`: summaries of up to 100 consecutive blocks."""
        raw_from = request.query.get("from", "1")
        raw_limit = request.query.get("limit", "20")
        if not NUMBER.match(raw_from) or not NUMBER.match(raw_limit):
            return error(400, "bad_range", "from and limit must be integers of at most 18 digits")
        limit = min(int(raw_limit), BLOCKS_PAGE_MAX)
        stored = self._backend.store.blocks(max(1, int(raw_from)), limit, 16 * 1024 * 1024)
        return web.json_response(
            {"blocks": [self._backend.block_json(b) for b in stored]}, dumps=_dumps
        )

    async def submit_tx(self, request: web.Request) -> web.Response:
        if request.content_length is None and not request.can_read_body:
            return error(400, "empty_body", "POST the raw transaction bytes as the request body")
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        if request.content_type == "application/json":
            return error(
                415,
                "bad_content_type",
                "send the signed transaction as application/octet-stream bytes, not JSON",
            )
        if not body:
            return error(400, "empty_body", "POST the raw transaction bytes as the request body")
        try:
            tx_hash = await self._backend.submit_tx(body)
        except MempoolError as exc:
            return error(_MEMPOOL_STATUS.get(exc.code, 400), exc.code, exc.reason)
        return web.json_response({"hash": tx_hash.hex(), "status": "pending"}, status=202)

    async def submit_batch(self, request: web.Request) -> web.Response:
        """`POST /txs/batch`: a canonical msgpack array of raw txs; one answer per tx, in order.

        For clients that submit many small txs (HTTP per tx costs more than check_tx).  The
        batch as a whole is refused only when it does not decode; each tx then succeeds or
        fails on its own exactly as `POST /txs` would.
        """
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        limits = DecodeLimits(
            message_bytes_max=self._body_bytes_max,
            bin_bytes_max=self._body_bytes_max,
            str_bytes_max=0,
            array_items_max=BATCH_TXS_MAX,
        )
        try:
            items = decode(body, limits)
        except CodecError as exc:
            return error(
                400, "bad_batch", f"body must be a canonical msgpack array of bytes: {exc}"
            )
        if not isinstance(items, list) or not all(isinstance(t, bytes) for t in items):
            return error(400, "bad_batch", "body must be a canonical msgpack array of bytes")
        results: list[dict[str, Any]] = []
        for tx in (t for t in items if isinstance(t, bytes)):
            try:
                tx_hash = await self._backend.submit_tx(tx)
            except MempoolError as exc:
                results.append({"error": exc.code, "reason": exc.reason})
            else:
                results.append({"hash": tx_hash.hex(), "status": "pending"})
        return web.json_response({"results": results}, dumps=_dumps)

    async def _read(self, request: web.Request) -> bytes | web.Response:
        """The body within the RPC's budgets, or the error answer (which closes the
        connection: the rest of an unread body must not be parsed as the next request)."""
        try:
            return await read_body(request, self._limits, self.budget)
        except BodyTooLarge:
            response = error(
                413, "too_large", f"request body exceeds the limit of {self._body_bytes_max} bytes"
            )
        except TimeoutError:
            response = error(
                408,
                "body_timeout",
                f"the request body did not arrive within {self._limits.body_timeout_ms} ms",
            )
        response.force_close()
        return response

    async def tx(self, request: web.Request) -> web.Response:
        raw = request.match_info["hash"]
        if not HASH_HEX.match(raw):
            return error(400, "bad_hash", "a tx hash is 64 hex characters (sha256 of its bytes)")
        tx_hash = bytes.fromhex(raw)
        loc = self._backend.store.tx(tx_hash)
        if loc is None:
            if self._backend.tx_pending(tx_hash):
                return web.json_response({"hash": raw.lower(), "status": "pending"})
            return error(404, "not_found", "unknown transaction (never seen, or dropped)")
        body: dict[str, Any] = {
            "hash": raw.lower(),
            "status": "committed",
            "height": loc.height,
            "index": loc.index,
            "code": loc.code,
            "reason": loc.reason,
        }
        if request.query.get("include") == "bytes":
            tx = self._backend.tx_bytes(loc.height, loc.index)
            body["tx"] = None if tx is None else tx.hex()
        return web.json_response(body, dumps=_dumps)

    async def validators(self, _request: web.Request) -> web.Response:
        return web.json_response(self._backend.validators_json(), dumps=_dumps)

    async def model(self, request: web.Request) -> web.Response:
        """The global model as canonical bytes; its version and hash travel in headers."""
        raw = request.match_info.get("version", "")
        if raw and not NUMBER.match(raw):
            return error(400, "bad_version", "model version must be a non-negative integer")
        result = self._backend.query(f"model/{raw}" if raw else "model", b"")
        if not result.ok:
            return error(404, "not_found", result.reason or "no such model")
        headers = {"X-Query-Height": str(result.height)}
        try:
            value = decode(result.value, MODEL_LIMITS)
            if isinstance(value, list) and len(value) >= 2 and isinstance(value[1], bytes):
                headers["X-Model-Version"] = str(value[0])
                headers["X-Model-Hash"] = value[1].hex()
        except CodecError:
            pass
        return web.Response(
            body=result.value, content_type="application/octet-stream", headers=headers
        )

    async def app_query_json(self, request: web.Request) -> web.Response:
        """`/round`, `/params`, `/accounts/{key}`, `/updates/{key}`, `/gov/...` as JSON.

        The app answers in canonical msgpack arrays; node/rpc/keyed.py names their fields (bytes
        become hex); paths without a table stay positional.
        """
        path = request.path.strip("/")
        if path.startswith("accounts/"):
            path = "account/" + path.removeprefix("accounts/")
        elif path.startswith("updates/"):
            path = "update/" + path.removeprefix("updates/")
        if not QUERY_PATH.match(path):
            return error(400, "bad_path", "path segments must match [a-z0-9_/.-]")
        result = self._backend.query(path, b"")
        if not result.ok:
            return error(404 if "unknown" in result.reason else 400, "query_failed", result.reason)
        try:
            value = keyed(path, decode(result.value, MODEL_LIMITS))
        except CodecError:
            return error(502, "bad_app_answer", "the application answered with non-canonical bytes")
        except ShapeError as exc:
            return error(502, "bad_app_answer", str(exc))
        return web.json_response({"height": result.height, "value": value}, dumps=_dumps)

    async def query(self, request: web.Request) -> web.Response:
        """`GET /query/{path}?data=HEX`: any app query path, answered as the app's raw bytes."""
        path = request.match_info["path"]
        if not QUERY_PATH.match(path):
            return error(400, "bad_path", "query path must match [a-z0-9_/.-]{1,128}")
        raw = request.query.get("data", "")
        if len(raw) > QUERY_DATA_CHARS_MAX:
            return error(413, "too_large", f"data is limited to {QUERY_DATA_CHARS_MAX} hex chars")
        try:
            data = bytes.fromhex(raw)
        except ValueError:
            return error(400, "bad_data", "data must be hex")
        result = self._backend.query(path, data)
        if not result.ok:
            return error(404 if "unknown" in result.reason else 400, "query_failed", result.reason)
        return web.Response(
            body=result.value,
            content_type="application/octet-stream",
            headers={"X-Query-Height": str(result.height)},
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        kinds = frozenset(k for k in request.query.get("events", "").split(",") if k)
        if len(kinds) > EVENT_KINDS_MAX or any(len(k) > EVENT_KIND_CHARS_MAX for k in kinds):
            return error(
                400,
                "bad_events",
                f"at most {EVENT_KINDS_MAX} event names of at most {EVENT_KIND_CHARS_MAX} chars",
            )
        ip = request.remote or "?"
        self._make_ws_room(ip)
        sub = self._backend.events.subscribe(kinds)
        if sub is None:
            return error(503, "too_many_subscribers", "the node's WebSocket slots are all in use")
        ws = web.WebSocketResponse(heartbeat=self._cfg.ws_idle_timeout_ms / 1000, max_msg_size=4096)
        try:
            await ws.prepare(request)
        except BaseException:
            self._backend.events.unsubscribe(sub)
            raise
        self._websockets[ws] = _WsClient(ip, sub)
        reader = asyncio.ensure_future(self._drain_client(ws))
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(sub.queue.get())
                overflow = asyncio.ensure_future(sub.wakeup.wait())
                done, _pending = await asyncio.wait(
                    {getter, overflow, reader}, return_when=asyncio.FIRST_COMPLETED
                )
                overflow.cancel()
                if getter in done:
                    await ws.send_str(_dumps(getter.result()))
                else:
                    getter.cancel()
                if sub.evicted:
                    await ws.close(code=1013, message=b"slot taken by a newer client; retry")
                    break
                if sub.overflowed:
                    await ws.close(code=1008, message=b"subscriber fell behind; reconnect")
                    break
                if reader in done:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._backend.events.unsubscribe(sub)
            self._websockets.pop(ws, None)
        return ws

    def _make_ws_room(self, ip: str) -> None:
        """Free a slot for a newcomer from `ip` if its address or the node is at its cap: the
        oldest WebSocket of the same address, else the oldest of the busiest address."""
        per_ip: dict[str, int] = {}
        for client in self._websockets.values():
            per_ip[client.ip] = per_ip.get(client.ip, 0) + 1
        if per_ip.get(ip, 0) >= self._cfg.ws_clients_per_ip_max:
            victim_ip = ip
        elif len(self._websockets) >= self._cfg.ws_clients_max:
            victim_ip = max(sorted(per_ip), key=lambda a: per_ip[a])
        else:
            return
        for ws, client in self._websockets.items():
            if client.ip == victim_ip:
                self._evict(ws, client)
                return

    def _evict(self, ws: web.WebSocketResponse, client: _WsClient) -> None:
        # Unsubscribe now so the slot is free for the newcomer; the handler sees the close.
        self._backend.events.unsubscribe(client.sub)
        del self._websockets[ws]
        client.sub.evicted = True
        client.sub.wakeup.set()
        self.ws_evicted += 1
        log_event(log, "rpc_ws_evicted", logging.INFO, ip=client.ip[:64])

    async def _drain_client(self, ws: web.WebSocketResponse) -> None:
        """Clients only listen; anything they send is ignored until they close."""
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    async def _close_websockets(self, _app: web.Application) -> None:
        for ws in list(self._websockets):
            await ws.close(code=1001, message=b"node shutting down")


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn aiohttp's own refusals into the API's error shape; never leak a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, "http_error", exc.reason)
        raise
    except CorruptBlockError as exc:
        # Never serve a damaged body; block sync is fetching it again from peers (node/sync.py).
        return error(503, "block_damaged", f"{exc}; being fetched again from peers: retry soon")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log_event(
            log, "rpc_handler_failed", logging.ERROR, path=request.path, error=repr(exc)[:200]
        )
        return error(500, "internal", "internal error; see the node log")
