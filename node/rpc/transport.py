"""The FL client SDK's Transport over a node's RPC (synchronous, stdlib HTTP).

`fl/client/transport.py` defines the Protocol; this is the network implementation `fedchain
client run` uses.  Waiting for a round polls `/query/round` and gives up once the chain has
advanced `blocks_max` heights without opening it.
"""

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field

from consensus.codec import decode, expect_int, expect_seq
from fl.client.errors import TransportError
from fl.client.transport import SubmitResult

RESPONSE_BYTES_MAX = 256 * 1024 * 1024


@dataclass(slots=True)
class RpcTransport:
    url: str
    timeout_s: float = 30.0
    poll_interval_s: float = 0.2
    _chain_id: str = field(default="", init=False)
    _conn: http.client.HTTPConnection | None = field(default=None, init=False, repr=False)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            parsed = urllib.parse.urlsplit(self.url)
            if parsed.scheme != "http" or not parsed.hostname:
                raise TransportError(f"RPC URL must be http://HOST:PORT, got {self.url!r}")
            self._conn = http.client.HTTPConnection(
                parsed.hostname, parsed.port or 80, timeout=self.timeout_s
            )
        return self._conn

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read(RESPONSE_BYTES_MAX + 1)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                if attempt == 1:
                    raise TransportError(f"{self.url}{path}: {exc}") from None
                continue
            if len(data) > RESPONSE_BYTES_MAX:
                raise TransportError(f"{path}: response larger than {RESPONSE_BYTES_MAX} bytes")
            return resp.status, data
        raise TransportError(f"{self.url}{path}: unreachable")  # pragma: no cover

    def status(self) -> dict[str, object]:
        code, data = self._request("GET", "/status")
        if code != 200:
            raise TransportError(f"/status: HTTP {code}")
        body: dict[str, object] = json.loads(data)
        return body

    def chain_id(self) -> str:
        if not self._chain_id:
            self._chain_id = str(self.status()["chain_id"])
        return self._chain_id

    def query(self, path: str) -> bytes:
        code, data = self._request("GET", "/query/" + urllib.parse.quote(path.strip("/")))
        if code != 200:
            raise TransportError(f"query {path}: HTTP {code}: {_reason(data)}")
        return data

    def submit(self, tx: bytes) -> SubmitResult:
        code, data = self._request("POST", "/txs", tx)
        if code == 202:
            return SubmitResult(True)
        return SubmitResult(False, f"HTTP {code}: {_reason(data)}")

    def height(self) -> int:
        return int(str(self.status()["height"]))

    def current_round(self) -> int:
        info = expect_seq(decode(self.query("round")), "round", 64)
        return expect_int(info[0], "round", 0)

    def wait_for_round(self, round_number: int, blocks_max: int) -> None:
        start = self.height()
        while True:
            if self.current_round() >= round_number:
                return
            if self.height() - start > blocks_max:
                raise TransportError(
                    f"round {round_number} did not open within {blocks_max} blocks"
                )
            time.sleep(self.poll_interval_s)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _reason(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        return f"{body.get('error', '')}: {body.get('reason', '')}"
    return str(body)[:200]
