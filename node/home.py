"""The data-directory layout of one node, in one place.

HOME/config.toml            node settings (node/config.py)
HOME/genesis.json           the chain's genesis (node/genesis.py)
HOME/node_key.json          p2p identity (peer id 12D3KooW...)
HOME/validator_key.json     consensus signing key (absent on a non-validator it is harmless)
HOME/data/blocks.sqlite     block rows, commits, tx index, app snapshots (node/store/)
HOME/data/blocks.dat        block bodies, appended; blocks.sqlite holds their offsets
HOME/data/cs.wal            consensus write-ahead log (node/wal.py)
HOME/data/last_signed.json  LastSigned(H, R, type): the double-sign guard (node/last_signed.py)
HOME/data/node.lock         held while a node runs, so two processes never share a home
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Home:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def genesis_file(self) -> Path:
        return self.root / "genesis.json"

    @property
    def node_key_file(self) -> Path:
        return self.root / "node_key.json"

    @property
    def validator_key_file(self) -> Path:
        return self.root / "validator_key.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def store_file(self) -> Path:
        return self.data_dir / "blocks.sqlite"

    @property
    def wal_file(self) -> Path:
        return self.data_dir / "cs.wal"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "node.lock"
