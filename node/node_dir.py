"""A node directory: what `cairn node init DIR --name NAME` creates, and how the node opens it.

    DIR/node.toml        name, node id, how the store key is obtained
    DIR/policy.toml      the community's privacy policy (privacy/policy.py)
    DIR/store.sqlite     the store (node/store.py), with the privacy ledger's tables
    DIR/keys/            ledger and SuperNode keys, store.key (node/keys.py), mode 0700
    DIR/reports/         privacy reports the node writes

The store opens only with its key (a wrong key or passphrase is refused before anything is read),
and keys stay in DIR/keys/ (ARCHITECTURE.md invariants 1 and 7).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import tomli_w

from node import keys
from node.crypto import CryptoError, StoreCipher, master_from_key_file, master_from_passphrase, new_key_file
from node.store import DB_NAME, Store
from privacy.keys import node_id_of, raw_public_key
from privacy.policy import Policy, load_policy

PASSPHRASE_ENV = "CAIRN_PASSPHRASE"


class NodeDirError(Exception):
    """DIR is not a usable node directory (missing, not initialised, no key)."""


@dataclass
class NodeDir:
    """A node directory on disk: its config, policy, keys and store."""
    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    @property
    def key_dir(self) -> Path:
        """DIR/keys: ledger, SuperNode and store keys (mode 0700)."""
        return self.path / "keys"

    @property
    def policy_path(self) -> Path:
        """DIR/policy.toml: the community's privacy policy."""
        return self.path / "policy.toml"

    @property
    def config_path(self) -> Path:
        """DIR/node.toml: name, node id, how the store key is obtained."""
        return self.path / "node.toml"

    # --- creation ------------------------------------------------------------------------------

    @classmethod
    def init(cls, path: Path, name: str, passphrase: str | None = None, policy: Policy | None = None,
             passphrase_env: str | None = None) -> "NodeDir":
        """Create a node directory: keys, config, policy and an empty store (NodeDirError if one is there).

        `passphrase_env` is the NAME of the environment variable that holds the passphrase; node.toml
        remembers the name (never the value) and every later command reads that variable."""
        path = Path(path)
        if (path / "node.toml").exists():
            raise NodeDirError(f"{path}: already a Cairn node directory")
        if not name or not name.strip():
            raise NodeDirError("--name must not be empty")
        path.mkdir(parents=True, exist_ok=True)
        nd = cls(path)
        keys.create_keys(nd.key_dir, comment=f"cairn-node:{name}")
        store_cfg: dict = {}
        if passphrase:
            salt = os.urandom(16)
            store_cfg = {"key": "passphrase", "kdf": "scrypt", "salt": salt.hex(),
                         "passphrase_env": passphrase_env or PASSPHRASE_ENV}
            master = master_from_passphrase(passphrase, salt)
        else:
            new_key_file(nd.key_dir / keys.STORE_KEY)
            store_cfg = {"key": "file", "key_file": f"keys/{keys.STORE_KEY}"}
            master = master_from_key_file(nd.key_dir / keys.STORE_KEY)
        cfg = {
            "name": name,
            "node_id": node_id_of(raw_public_key(keys.load_ledger_public(nd.key_dir))),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": store_cfg,
        }
        nd.config_path.write_text(tomli_w.dumps(cfg), encoding="utf-8")
        (policy or Policy(community=name)).save(nd.policy_path)
        cipher = StoreCipher.from_master(master)
        with Store(path / DB_NAME, cipher) as store, store.transaction():
            store.meta_set("key_check", cipher.check_value())
            store.meta_set("node_name", name)
        (path / "reports").mkdir(exist_ok=True)
        return nd

    # --- opening -------------------------------------------------------------------------------

    def config(self) -> dict:
        """node.toml as a dict; NodeDirError when DIR is not a node directory."""
        if not self.config_path.exists():
            raise NodeDirError(f"{self.path}: not a Cairn node directory (no node.toml; run `cairn node init`)")
        try:
            return tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise NodeDirError(f"{self.config_path}: not valid TOML: {e}") from None

    @property
    def name(self) -> str:
        """The community's name."""
        return self.config()["name"]

    @property
    def node_id(self) -> str:
        """The node id: a digest of the ledger's public key."""
        return self.config()["node_id"]

    def policy(self) -> Policy:
        """The community's privacy policy (privacy/policy.py)."""
        return load_policy(self.policy_path)

    def cipher(self, passphrase: str | None = None) -> StoreCipher:
        """The store cipher from the key file, or from the passphrase (when not given: the environment
        variable named at init, remembered in node.toml; $CAIRN_PASSPHRASE for older nodes)."""
        scfg = self.config().get("store", {})
        if scfg.get("key") == "passphrase":
            var = scfg.get("passphrase_env") or PASSPHRASE_ENV
            passphrase = passphrase or os.environ.get(var)
            if not passphrase:
                raise NodeDirError(f"{self.path}: this store is passphrase-protected; set the environment variable {var} "
                                   f"(named at `cairn node init --passphrase-env`)")
            master = master_from_passphrase(passphrase, bytes.fromhex(scfg["salt"]))
        else:
            kf = self.path / scfg.get("key_file", f"keys/{keys.STORE_KEY}")
            if not kf.exists():
                raise NodeDirError(f"{kf}: store key file missing")
            master = master_from_key_file(kf)
        return StoreCipher.from_master(master)

    def open_store(self, passphrase: str | None = None) -> Store:
        """The node's store, checked against its key; use as `with nd.open_store() as store:`."""
        self.config()
        cipher = self.cipher(passphrase)
        store = Store(self.path / DB_NAME, cipher)
        if store.meta_get("key_check") != cipher.check_value():
            store.close()
            raise CryptoError(f"{self.path}: wrong store key or passphrase")
        return store

    def ledger_key(self):
        """The node's Ed25519 ledger signing key."""
        return keys.load_ledger_key(self.key_dir)

    def ledger_public(self):
        """The node's Ed25519 ledger public key."""
        return keys.load_ledger_public(self.key_dir)
