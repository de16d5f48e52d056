"""A node directory: what `cairn node init DIR --name NAME` creates, and how the node opens it.

    DIR/node.toml        name, node id, how the store key is obtained
    DIR/policy.toml      the community's privacy policy (privacy/policy.py)
    DIR/store.sqlite     the store (node/store.py), with the privacy ledger's tables
    DIR/keys/            ledger and SuperNode keys, store.key (node/keys.py), mode 0700
    DIR/reports/         privacy reports the node writes

The directory is sealed (issue 15, item 9): folders 0700 and files 0600 (created under umask 077;
older directories are fixed when the store opens), the whole store file encrypted (SQLCipher,
node/store_db.py), and with a passphrase the private key files sealed under it (node/keys.py), so a
stolen directory without the passphrase neither reads the store nor signs ledger entries (a thief can
still guess passphrases offline against the file: init refuses one under MIN_PASSPHRASE characters,
and node.toml records the scrypt parameters so later defaults can be raised). In key
file mode, DIR/keys/store.key is the key: whoever has the directory has it.

The store opens only with its key (a wrong key or passphrase is refused before anything is read),
and keys stay in DIR/keys/ (ARCHITECTURE.md invariants 1 and 7).
"""

from __future__ import annotations

import os
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import tomli_w

from node import keys
from node.crypto import SCRYPT_N, SCRYPT_P, SCRYPT_R, CryptoError, StoreCipher, master_from_key_file, master_from_passphrase, new_key_file
from node.store import DB_NAME, Store
from node.store_db import private_umask, seal_modes
from privacy.keys import node_id_of, raw_public_key
from privacy.policy import Policy, load_policy

PASSPHRASE_ENV = "CAIRN_PASSPHRASE"
MIN_PASSPHRASE = 12


class NodeDirError(Exception):
    """DIR is not a usable node directory (missing, not initialised, no key)."""


@dataclass
class NodeDir:
    """A node directory on disk: its config, policy, keys and store."""
    path: Path
    _ciphers: dict = field(default_factory=dict, repr=False, compare=False)  # passphrase -> StoreCipher (scrypt once)

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
        if passphrase is not None and len(passphrase) < MIN_PASSPHRASE:  # a thief guesses it offline, against the file
            raise NodeDirError(f"the passphrase must be at least {MIN_PASSPHRASE} characters (a few random words)")
        with private_umask():
            return cls._init(path, name, passphrase, policy, passphrase_env)

    @classmethod
    def _init(cls, path: Path, name: str, passphrase: str | None, policy: Policy | None,
              passphrase_env: str | None) -> "NodeDir":
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        nd = cls(path)
        store_cfg: dict = {}
        if passphrase:
            salt = os.urandom(16)
            store_cfg = {"key": "passphrase", "kdf": "scrypt", "salt": salt.hex(), "scrypt_n": SCRYPT_N,
                         "scrypt_r": SCRYPT_R, "scrypt_p": SCRYPT_P, "passphrase_env": passphrase_env or PASSPHRASE_ENV}
            master = master_from_passphrase(passphrase, salt)
            keys.create_keys(nd.key_dir, comment=f"cairn-node:{name}", keys_key=StoreCipher.from_master(master).keys_key)
        else:
            keys.create_keys(nd.key_dir, comment=f"cairn-node:{name}")
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
        (path / "reports").mkdir(mode=0o700, exist_ok=True)
        seal_modes(path)
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
            if passphrase not in self._ciphers:
                params = (int(scfg.get("scrypt_n", SCRYPT_N)), int(scfg.get("scrypt_r", SCRYPT_R)), int(scfg.get("scrypt_p", SCRYPT_P)))
                if params[0] < 2**14 or params[0] & (params[0] - 1) or not 1 <= params[1] <= 64 or not 1 <= params[2] <= 16:
                    raise NodeDirError(f"{self.config_path}: scrypt parameters {params} are out of range")
                self._ciphers[passphrase] = StoreCipher.from_master(
                    master_from_passphrase(passphrase, bytes.fromhex(scfg["salt"]), *params))
            return self._ciphers[passphrase]
        else:
            kf = self.path / scfg.get("key_file", f"keys/{keys.STORE_KEY}")
            if not kf.exists():
                raise NodeDirError(f"{kf}: store key file missing")
            master = master_from_key_file(kf)
        return StoreCipher.from_master(master)

    @property
    def uses_passphrase(self) -> bool:
        """Is the store key derived from a passphrase (and the private key files sealed under it)?"""
        return self.config().get("store", {}).get("key") == "passphrase"

    def open_store(self, passphrase: str | None = None) -> Store:
        """The node's store, checked against its key; use as `with nd.open_store() as store:`.
        Opening also seals an older directory: modes 0700/0600, a plaintext store encrypted, and
        with a passphrase the private key files sealed."""
        self.config()
        db = self.path / DB_NAME
        if not db.exists() or db.stat().st_size == 0:  # never silently start an empty store in its place
            raise NodeDirError(f"{db}: the node store is {'missing' if not db.exists() else 'empty'}; restore it from a backup")
        cipher = self.cipher(passphrase)
        seal_modes(self.path)
        with private_umask():
            store = Store(self.path / DB_NAME, cipher)
        if store.meta_get("key_check") != cipher.check_value():
            store.close()
            raise CryptoError(f"{self.path}: wrong store key or passphrase")
        if self.uses_passphrase:
            keys.seal_key_files(self.key_dir, cipher.keys_key)
        return store

    def _keys_key(self, passphrase: str | None) -> bytes | None:
        return self.cipher(passphrase).keys_key if self.uses_passphrase else None

    def ledger_key(self, passphrase: str | None = None):
        """The node's Ed25519 ledger signing key (with a passphrase node, opened with the passphrase)."""
        try:
            return keys.load_ledger_key(self.key_dir, self._keys_key(passphrase))
        except keys.KeyLocked as e:
            raise CryptoError(str(e)) from None

    @contextmanager
    def supernode_key_file(self, passphrase: str | None = None):
        """A plain SuperNode private key file for `flower-supernode --auth-supernode-private-key`, for
        the duration of the block (with a passphrase node, a 0600 copy removed at the end)."""
        with keys.unsealed_supernode_key(self.key_dir, self._keys_key(passphrase)) as path:
            yield path

    def ledger_public(self):
        """The node's Ed25519 ledger public key."""
        return keys.load_ledger_public(self.key_dir)
