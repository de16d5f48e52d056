"""A community's privacy policy: the TOML file `cairn node init` writes and the node enforces.

The policy is the community's, not the coordinator's: nothing a coordinator sends can loosen it
(ARCHITECTURE.md invariant 3). Enforcement lives with the release gate; this module owns the file format.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import tomli_w

from protos.wire import RELEASE_KINDS  # "train" and the aggregate query kinds

DIMENSIONS = ("broad", "specific")
DEFINITIONS = ("prescriptive", "descriptive")
MIN_QUERY_EPSILON = 0.01  # the default floor on a requested query or discovery epsilon
# Bounds on what a coordinator may ask a node to compute, with their defaults. Each is written to the
# file only when not its default, so a policy from before these fields re-dumps to the same text and
# keeps the hash its ledger entries recorded.
OPTIONAL_DEFAULTS: dict[str, float | int] = {
    "min_query_epsilon": MIN_QUERY_EPSILON,
    "max_models": 100,  # most model names one query may list (battle_counts is quadratic in it)
    "max_rounds": 100,  # most federated rounds a training plan may have
    "max_local_steps": 10_000,  # most DP-SGD steps per round
    "max_feature_dim": 4096,  # largest featurizer dimension a coordinator may ask for
    "max_hidden": 4096,  # largest hidden width of the reward model's head
}


class PolicyError(ValueError):
    """The policy file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Trust:
    """`[trust]`: whom the node relies on in secure aggregation and distributed DP (issue 11). Nodes check
    every signed SecAgg+ run plan against it (privacy/secagg/run_plan.py); written only when not default."""

    secagg_min_peers: int = 2  # fewest OTHER nodes in a SecAgg+ roster the node will aggregate with
    # the plan's threshold t must be > fraction x (neighbourhood size + 1): with the default 0.5 no two
    # disjoint halves of a neighbourhood can each reach t (Bonawitz et al. 2017 section 6)
    secagg_threshold_fraction: float = 0.5
    min_honest_nodes: int = 2  # distributed DP: the honest nodes whose noise shares alone reach the target
    peers: tuple[str, ...] = ()  # pinned ledger public keys (hex); when set, every roster member must be one

    def problems(self) -> list[str]:
        """Every rule the values break, each naming its field."""
        out = []
        for name in ("secagg_min_peers", "min_honest_nodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                out.append(f"trust.{name} must be an integer >= 1, got {v!r}")
        f = self.secagg_threshold_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.5 <= f < 1:
            out.append(f"trust.secagg_threshold_fraction must be in [0.5, 1), got {f!r}")
        for k in self.peers:
            if not isinstance(k, str) or len(k) != 64 or any(c not in "0123456789abcdef" for c in k):
                out.append(f"trust.peers: {k!r} is not a 32-byte Ed25519 public key in lowercase hex")
        return out

    def to_toml_dict(self) -> dict:
        """The fields that differ from their defaults (empty when all are default)."""
        d = Trust()
        return {k: list(v) if k == "peers" else v for k, v in asdict(self).items() if v != getattr(d, k)}


@dataclass(frozen=True)
class Policy:
    """A community's privacy policy (`policy.toml`): what the node may release, at what cost, and when."""

    community: str
    epsilon_cap: float = 8.0  # total epsilon the community allows, at `delta`
    delta: float = 1e-6  # target delta for every epsilon this node reports
    max_delta: float = 1e-5  # the ceiling on delta the community accepts (the auditor flags a delta above it)
    allowed_releases: tuple[str, ...] = RELEASE_KINDS
    min_contributors: int = 20  # a release needs at least this many eligible contributors, by a noisy count:
    # sigma of the discrete Gaussian added to the eligible count before it is compared with min_contributors
    # (an accounted DP release, its own ledger entry "threshold:<kind>"). 0 = an exact threshold: the policy
    # then makes public, exactly, whether the community has min_contributors eligible members.
    min_contributors_noise: float = 6.0
    max_release_cells: int = 10_000  # largest aggregate answer (cells) a node will release
    max_query_epsilon: float = 1.0  # most epsilon one aggregate query may spend
    # least epsilon a query or discovery may ask for: calibrating noise for a tiny epsilon takes minutes
    # (and gives useless answers), so smaller requests are refused by rule before any work
    min_query_epsilon: float = MIN_QUERY_EPSILON
    # bounds on the work a coordinator may ask for (OPTIONAL_DEFAULTS): refused by rule before any work
    max_models: int = 100
    max_rounds: int = 100
    max_local_steps: int = 10_000
    max_feature_dim: int = 4096
    max_hidden: int = 4096
    max_sampling_rate: float = 0.2  # highest Poisson rate for DP-SGD over contributors
    min_noise_multiplier: float = 0.5  # DP-SGD noise floor (sigma / clipping norm)
    waiting_period_hours: float = 24.0  # consent -> eligible delay (ShareLM waits 24 h)
    licences: tuple[str, ...] = ("CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0", "Apache-2.0")
    dimensions: str = "broad"  # the community's feedback paradigm: broad or specific dimensions
    definitions: str = "descriptive"  # prescriptive or descriptive definitions
    trust: Trust = field(default_factory=Trust)  # [trust] (issue 11), written only when not default
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise PolicyError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every rule the values break, each naming its field (empty when the policy is valid)."""
        out = []
        if not (self.epsilon_cap > 0):
            out.append(f"privacy.epsilon_cap must be > 0, got {self.epsilon_cap}")
        if not (0 < self.delta < 1):
            out.append(f"privacy.delta must be in (0, 1), got {self.delta}")
        if not (0 < self.max_delta < 1):
            out.append(f"privacy.max_delta must be in (0, 1), got {self.max_delta}")
        elif self.delta > self.max_delta:
            out.append(f"privacy.delta {self.delta} is above the ceiling privacy.max_delta {self.max_delta}")
        for k in self.allowed_releases:
            if k not in RELEASE_KINDS:
                out.append(f"privacy.allowed_releases: unknown kind {k!r} (known: {', '.join(RELEASE_KINDS)})")
        if self.min_contributors < 1:
            out.append(f"privacy.min_contributors must be >= 1, got {self.min_contributors}")
        if not (self.min_contributors_noise >= 0 and self.min_contributors_noise < float("inf")):
            out.append(f"privacy.min_contributors_noise must be >= 0 and finite, got {self.min_contributors_noise}")
        if self.max_release_cells < 1:
            out.append(f"privacy.max_release_cells must be >= 1, got {self.max_release_cells}")
        if not (self.max_query_epsilon > 0):
            out.append(f"privacy.max_query_epsilon must be > 0, got {self.max_query_epsilon}")
        if not (0 < self.min_query_epsilon < float("inf")):
            out.append(f"privacy.min_query_epsilon must be > 0 and finite, got {self.min_query_epsilon}")
        for name in ("max_models", "max_rounds", "max_local_steps", "max_feature_dim", "max_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                out.append(f"privacy.{name} must be an integer >= 1, got {v!r}")
        if not (0 < self.max_sampling_rate <= 1):
            out.append(f"privacy.max_sampling_rate must be in (0, 1], got {self.max_sampling_rate}")
        if not (self.min_noise_multiplier >= 0):
            out.append(f"privacy.min_noise_multiplier must be >= 0, got {self.min_noise_multiplier}")
        if self.waiting_period_hours < 0:
            out.append(f"consent.waiting_period_hours must be >= 0, got {self.waiting_period_hours}")
        if self.dimensions not in DIMENSIONS:
            out.append(f"paradigm.dimensions must be one of {DIMENSIONS}, got {self.dimensions!r}")
        if self.definitions not in DEFINITIONS:
            out.append(f"paradigm.definitions must be one of {DEFINITIONS}, got {self.definitions!r}")
        return out + (self.trust.problems() if isinstance(self.trust, Trust) else ["trust must be a Trust"])

    # --- file format -------------------------------------------------------------------------

    def to_toml_dict(self) -> dict:
        """The policy as the nested tables of `policy.toml`."""
        return {
            "community": {"name": self.community},
            "privacy": {
                "unit": "contributor",
                "epsilon_cap": self.epsilon_cap,
                "delta": self.delta,
                "max_delta": self.max_delta,
                "allowed_releases": list(self.allowed_releases),
                "min_contributors": self.min_contributors,
                "min_contributors_noise": self.min_contributors_noise,
                "max_release_cells": self.max_release_cells,
                "max_query_epsilon": self.max_query_epsilon,
                "max_sampling_rate": self.max_sampling_rate,
                "min_noise_multiplier": self.min_noise_multiplier,
                # written only when not the default, so that a policy from before the field re-dumps to the
                # same text and keeps the hash its ledger entries recorded
                **{k: getattr(self, k) for k, d in OPTIONAL_DEFAULTS.items() if getattr(self, k) != d},
            },
            "consent": {
                "waiting_period_hours": self.waiting_period_hours,
                "licences": list(self.licences),
            },
            "paradigm": {"dimensions": self.dimensions, "definitions": self.definitions},
            # written only when not default: a policy from before [trust] keeps its text and hash
            **({"trust": trust} if (trust := self.trust.to_toml_dict()) else {}),
            **({"extra": self.extra} if self.extra else {}),
        }

    def dumps(self) -> str:
        """The policy file's text (its SHA-256 is recorded in every ledger entry)."""
        header = (
            "# Cairn community privacy policy. The node enforces it before every release;\n"
            "# the unit of privacy is one contributor (a person). Edit with care: every\n"
            "# ledger entry records the hash of the policy in force.\n"
        )
        return header + tomli_w.dumps(self.to_toml_dict())

    def save(self, path: Path) -> None:
        """Write the policy file atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        tmp.replace(path)

    def sha256(self) -> str:
        """Hex SHA-256 of `dumps()`: the policy hash ledger entries record."""
        return hashlib.sha256(self.dumps().encode()).hexdigest()

    def as_dict(self) -> dict:
        """The policy's fields as a plain dict."""
        return asdict(self)


_SCHEMA: dict[tuple[str, str], tuple[str, type]] = {
    ("community", "name"): ("community", str),
    ("privacy", "epsilon_cap"): ("epsilon_cap", float),
    ("privacy", "delta"): ("delta", float),
    ("privacy", "max_delta"): ("max_delta", float),
    ("privacy", "allowed_releases"): ("allowed_releases", list),
    ("privacy", "min_contributors"): ("min_contributors", int),
    ("privacy", "min_contributors_noise"): ("min_contributors_noise", float),
    ("privacy", "max_release_cells"): ("max_release_cells", int),
    ("privacy", "max_query_epsilon"): ("max_query_epsilon", float),
    ("privacy", "min_query_epsilon"): ("min_query_epsilon", float),
    ("privacy", "max_models"): ("max_models", int),
    ("privacy", "max_rounds"): ("max_rounds", int),
    ("privacy", "max_local_steps"): ("max_local_steps", int),
    ("privacy", "max_feature_dim"): ("max_feature_dim", int),
    ("privacy", "max_hidden"): ("max_hidden", int),
    ("privacy", "max_sampling_rate"): ("max_sampling_rate", float),
    ("privacy", "min_noise_multiplier"): ("min_noise_multiplier", float),
    ("consent", "waiting_period_hours"): ("waiting_period_hours", float),
    ("consent", "licences"): ("licences", list),
    ("paradigm", "dimensions"): ("dimensions", str),
    ("paradigm", "definitions"): ("definitions", str),
}


_TRUST_TYPES: dict[str, type] = {"secagg_min_peers": int, "secagg_threshold_fraction": float,
                                 "min_honest_nodes": int, "peers": list}


def _load_trust(path: Path, raw: Any) -> Trust:
    """The `[trust]` table (absent: the defaults); errors name the file and the field."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: trust must be a table, got {raw!r}")
    kwargs: dict = {}
    for key, value in raw.items():
        typ = _TRUST_TYPES.get(key)
        if typ is None:
            raise PolicyError(f"{path}: unknown field trust.{key} (known: {', '.join(_TRUST_TYPES)})")
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise PolicyError(f"{path}: field trust.{key} must be {typ.__name__}, got {value!r}")
        kwargs[key] = tuple(cast(list, value)) if typ is list else value
    trust = Trust(**kwargs)
    if problems := trust.problems():
        raise PolicyError(f"{path}: {'; '.join(problems)}")
    return trust


def query_epsilon_problem(policy: Policy, epsilon: Any, what: str = "query epsilon") -> str | None:
    """Why a requested query or discovery epsilon is refused by rule (None when acceptable): not a
    number, not finite, or below the policy's floor min_query_epsilon (checked before any calibration)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        return f"{what} must be a number, got {epsilon!r}"
    try:
        finite = math.isfinite(float(epsilon))
    except OverflowError:  # an int past float range
        finite = False
    if not finite or epsilon <= 0:
        return f"{what} must be finite and > 0, got {epsilon!r}"[:300]
    if epsilon < policy.min_query_epsilon:
        return f"policy rule min_query_epsilon: {what} {epsilon:g} is below the floor {policy.min_query_epsilon:g}"
    return None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; errors name the file and the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PolicyError(f"{path}: not valid TOML: {e}") from None
    if raw.get("privacy", {}).get("unit", "contributor") != "contributor":
        raise PolicyError(f"{path}: privacy.unit must be 'contributor' (the unit of privacy is a person)")
    kwargs: dict = {}
    for (section, key), (attr, typ) in _SCHEMA.items():
        if key not in raw.get(section, {}):
            if (section, key) == ("community", "name"):
                raise PolicyError(f"{path}: missing field community.name")
            continue
        value: Any = raw[section][key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise PolicyError(f"{path}: field {section}.{key} must be {typ.__name__}, got {value!r}")
        kwargs[attr] = tuple(cast(list, value)) if typ is list else value
    kwargs["extra"] = raw.get("extra", {})
    kwargs["trust"] = _load_trust(path, raw.get("trust", {}))
    try:
        return Policy(**kwargs)
    except PolicyError as e:
        raise PolicyError(f"{path}: {e}") from None
