"""The [mempool] settings are the mempool's: one place holds the defaults, and what an operator
writes in config.toml is what the running mempool enforces."""

import dataclasses
from pathlib import Path

import pytest

from node.config import MempoolConfig, load_config
from node.errors import MempoolError
from node.mempool import Mempool, MempoolPolicy
from tests.node.test_mempool import Accounts, Clock


def test_the_policy_defaults_are_the_config_defaults() -> None:
    config_fields = {f.name for f in dataclasses.fields(MempoolConfig)}
    policy_fields = {f.name for f in dataclasses.fields(MempoolPolicy)}
    assert policy_fields <= config_fields, policy_fields - config_fields
    assert MempoolPolicy() == MempoolPolicy.from_config(MempoolConfig())


def test_settings_from_the_toml_file_reach_the_mempool(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[mempool]\n"
        "txs_max = 3\n"
        "sender_txs_max = 2\n"
        "sender_bytes_max = 1000\n"
        "nonce_gap_max = 2\n"
        "ttl_ms = 60000\n"
        "ttl_heights = 7\n"
        "gapped_ttl_ms = 2000\n"
        "recheck_interval_ms = 900\n"
    )
    cfg = load_config(path).mempool
    assert MempoolPolicy.from_config(cfg) == MempoolPolicy(
        sender_txs_max=2,
        sender_bytes_max=1000,
        nonce_gap_max=2,
        ttl_ms=60_000,
        ttl_heights=7,
        gapped_ttl_ms=2_000,
        recheck_interval_ms=900,
    )
    clock = Clock()
    pool = Mempool.from_config(Accounts().check_tx, cfg, clock=clock)
    pool.add(b"a:0:x")
    pool.add(b"a:1:x")
    with pytest.raises(MempoolError, match="limit 2") as info:  # sender_txs_max
        pool.add(b"a:2:x")
    assert info.value.code == "sender_limit"
    with pytest.raises(MempoolError, match="at most 2 ahead") as info:  # nonce_gap_max
        pool.add(b"b:3:x")
    assert info.value.code == "nonce_gap"
    pool.add(b"b:1:x")  # gapped: b's nonce 0 is missing
    with pytest.raises(MempoolError, match="3 transactions"):  # txs_max
        pool.add(b"c:1:x")
    clock.now += 2.0  # gapped_ttl_ms
    pool.update([])
    assert len(pool) == 2
    assert pool.gapped == 0
