"""The wire contract between a node and the coordinator, defined once and imported by both sides.

Owns every name that crosses the node/coordinator boundary:

- the Flower message types of each exchange (`MessageType`), the records a message carries
  (`Record`) and the keys inside them (`Key`); node/client_app.py answers them,
  coordinator/server_app.py and coordinator/queries.py ask;
- the aggregate query kinds (`QUERY_KINDS`), their parameters (`Param`) and the cell layout of each
  answer (`partitions`), which node/queries.py answers over and coordinator/queries.py sums over;
- the public vocabularies: battle `OUTCOMES` (also the pairwise feedback outcomes of node/schema.py),
  thumbs values, implicit signals, the release kinds a community's policy names (`RELEASE_KINDS`,
  privacy/policy.py), and the public label lists the coordinator asks about.

Invariant protected (ARCHITECTURE.md invariant 1): a count query's cells are public labels only. The
coordinator sends them and the node counts over them, so an answer reveals nothing about which labels
a community holds except through its DP noisy counts. The one release whose keys ARE read from a
node's data is private key selection (`DISCOVERY_KIND`, node/discovery.py): a key leaves only if it
is label-shaped (`public_label`) and passes a DP threshold, accounted like any release.
Nothing here imports Flower, the node or the coordinator. The SecAgg+ stage names and keys are the
protocol's own (privacy/secagg/constants.py, which also checks their order); this module gives the
stages their message types.
"""

from __future__ import annotations

import json
import re
import unicodedata
from itertools import combinations

from privacy.secagg.constants import Key as SecAggKey
from privacy.secagg.constants import Stage


class MessageType:
    """Flower message types ("<category>.<action>") the coordinator sends and the node answers."""

    HELLO = "query.hello"  # public identity and policy facts
    TRAIN = "train"  # one round of user-level DP-SGD
    LEDGER = "query.ledger"  # the signed ledger export
    BUDGET = "query.budget"  # the node's budget: cap, spent, remaining (public by design; no member counts)
    AGGREGATE = "query.aggregate"  # one DP aggregate query (protos/query.proto Query)
    # SecAgg+ stages, in protocol order (named in privacy/secagg/constants.py)
    SECAGG_KEYS = "query." + Stage.KEYS
    SECAGG_SHARES = "query." + Stage.SHARES
    SECAGG_MASKED = "query." + Stage.MASKED
    SECAGG_CONSISTENCY = "query." + Stage.CONSISTENCY
    SECAGG_UNMASK = "query." + Stage.UNMASK


SECAGG_STAGES = tuple("query." + stage for stage in Stage.ALL)  # protocol order


# Simulation Engine: the JSON list of node directories; a virtual SuperNode serves the one at its
# partition id (coordinator/simulation.py sets it, node/client_app.py reads it).
SIMULATION_NODES_ENV = "CAIRN_FEDERATION_NODES"


def query_action(message_type: str) -> str:
    """The action of a `query.<action>` message type, as Flower's `ClientApp.query(action)` registers it."""
    category, _, action = message_type.partition(".")
    if category != "query" or not action:
        raise ValueError(f"{message_type!r} is not a query message type")
    return action


class Record:
    """Names of the records (RecordDict entries) in messages."""

    INFO = "info"  # hello reply: Key.NODE_ID ... Key.POLICY_TOML
    CONFIG = "config"  # coordinator -> node parameters (train request, SecAgg stage inputs)
    ARRAYS = "arrays"  # the global model, a DP update, or a masked vector
    STATUS = "status"  # node reply: Key.OK, then Key.REFUSED or the release's ledger entry
    KEYS = SecAggKey.KEYS  # SecAgg+ public keys
    SHARES = SecAggKey.SHARES  # SecAgg+ encrypted shares / revealed shares
    INBOX = SecAggKey.INBOX  # SecAgg+ shares routed to a node
    LEDGER = "ledger"  # Key.EXPORT: the signed LedgerExport
    QUERY = "query"  # Key.QUERY: a serialized Query
    ANSWER = "answer"  # Key.ANSWER: a serialized Answer
    POLICY = "policy"  # the node's public policy facts (for the data card)
    BUDGET = "budget"  # budget reply: Key.EPSILON_CAP, Key.SPENT_EPSILON, Key.REMAINING_EPSILON, ...
    HEAD = "ledger_head"  # in EVERY node reply: Key.SIGNED_HEAD, the node-signed ledger head (privacy/ledger_head.py)
    RUN = "run"  # in every coordinator message: Key.RUN_ID, the federation id the node signs its head for
    SECAGG_PLAN = "secagg_plan"  # a train message under SecAgg+: Key.ME, Key.RUN_PLAN; the reply carries KEYS


class Key:
    """Keys inside the records above."""

    # hello info
    NODE_ID = "node_id"
    NAME = "name"
    LEDGER_PUBLIC_KEY = "ledger_public_key"
    DELTA = "delta"
    EPSILON_CAP = "epsilon_cap"
    PARADIGM = "paradigm"
    POLICY_TOML = "policy_toml"
    # policy facts (aggregate replies; with EPSILON_CAP, DELTA, PARADIGM): for the data card
    LICENCES = "licences"
    MAX_QUERY_EPSILON = "max_query_epsilon"
    MIN_CONTRIBUTORS = "min_contributors"
    # budget reply (with EPSILON_CAP, DELTA, MAX_QUERY_EPSILON): from the node's ledger, no member counts
    SPENT_EPSILON = "spent_epsilon"
    REMAINING_EPSILON = "remaining_epsilon"
    ALLOWED_RELEASES = "allowed_releases"
    ACCOUNTANT = "accountant"
    THRESHOLD_EPSILON = "threshold_epsilon"  # what each release's noisy min_contributors test costs
    PLAN = "plan"  # budget request (optional): JSON {"train": request or null, "queries": [[kind, eps]], "train_share"}
    QUOTE = "quote"  # budget reply to a PLAN: JSON node/planning.py `quote` (what the ledger would say after)
    # status
    OK = "ok"
    REFUSED = "refused"
    LEDGER_SEQ = "ledger_seq"
    LEDGER_ENTRY_HASH = "ledger_entry_hash"
    CLAIMED_EPSILON = "claimed_epsilon"
    NOISE_MULTIPLIER = "noise_multiplier"  # train status, informational
    SAMPLING_PROBABILITY = "sampling_probability"
    STEPS = "steps"
    # train config (the rest of the config record are node.training.TrainRequest's field names)
    FEATURIZER = "featurizer"  # JSON featurizer config
    HEAD = "head"  # JSON reward-head architecture
    SECAGG = "secagg"
    # SecAgg+ stage inputs and outputs
    ME = SecAggKey.ME
    PARAMS = SecAggKey.PARAMS
    PKS = SecAggKey.PKS
    SURVIVORS = SecAggKey.SURVIVORS
    DROPPED = SecAggKey.DROPPED
    C_PK = SecAggKey.C_PK
    S_PK = SecAggKey.S_PK
    RUN_PLAN = SecAggKey.RUN_PLAN
    KEY_SIG = SecAggKey.KEY_SIG
    VIEW_SIG = SecAggKey.VIEW_SIG
    VIEW_SIGS = SecAggKey.VIEW_SIGS
    # ledger, query, answer records
    EXPORT = "export"
    SIGNED_HEAD = "signed_head"  # JSON of privacy/ledger_head.py LedgerHead
    RUN_ID = "run_id"
    QUERY = "query"
    ANSWER = "answer"


# --- query kinds and their cells ------------------------------------------------------------------

QUERY_KINDS = (
    "battle_counts",  # pairwise outcome counts per model pair
    "thumbs_rates",  # thumbs up/down per model
    "rating_histogram",  # rating distribution per named dimension
    "coverage",  # counts by language, model, topic
    "implicit_feedback",  # thanks / corrections / rephrasings found in chats
    "policy_objections",  # members objecting to the latest policy proposal (node/service/governance.py)
)
# Private key selection (node/discovery.py): which model names, languages or rating dimensions a
# community's data holds, released only past a DP threshold (privacy/mechanisms.py
# `noisy_key_selection`). Its answer's cells are keys read from the data, so it is no count query:
# it has no `partitions` and is never summed; the coordinator unions what the nodes release.
DISCOVERY_KIND = "discover_keys"
KEY_TYPES = ("model", "language", "dimension")
# The key types each query kind counts over, when the coordinator was given no public list for them
# (topics come from the fixed public list PUBLIC_TOPICS, assigned on the node).
QUERY_KEY_TYPES = {"battle_counts": ("model",), "thumbs_rates": ("model",), "rating_histogram": ("dimension",),
                   "coverage": ("language", "model")}
DEFAULT_MAX_KEYS = 2  # keys one contributor may add to a discovery (contribution bound)

# What a community's policy may allow (privacy/policy.py): "train" (a DP-SGD reward-model update),
# every aggregate query kind, and key discovery.
RELEASE_KINDS = ("train",) + QUERY_KINDS + (DISCOVERY_KIND,)

MAX_LABEL_CHARS = 64
_LABEL = re.compile(r"[^\W_][\w.:/+\-]*(?: [\w.:/+\-]+){0,2}")
MAX_LABEL_DIGITS = 6  # a key with more digits (a phone number, an id) is not a label; a release date is not counted
_DATE = re.compile(r"(?<!\d)(?:19|20)\d\d[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12]\d|3[01])(?!\d)")
_EMAIL_LIKE = re.compile(r"[\w.+\-]+(?:@|\s*[(\[]at[)\]]\s*|\s+at\s+)[\w\-]+(?:\.|\s+dot\s+)\w+", re.IGNORECASE)


def public_label(value: object) -> bool:
    """Whether a key read from data may be released as a label (if it passes the DP threshold): at most
    MAX_LABEL_CHARS characters, NFKC-normal, a letter or digit first, then letters, digits and . : / + - _,
    at most three space-separated words, no control characters, at most MAX_LABEL_DIGITS digits besides a
    date (so no phone number or id), nothing e-mail shaped. Anything else (a sentence, an e-mail
    address, a phone number, chat text) is never released, whatever its count; the node filters by this rule and the
    coordinator refuses an answer holding a key that breaks it."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_LABEL_CHARS
            and unicodedata.normalize("NFKC", value) == value and _LABEL.fullmatch(value) is not None
            and sum(c.isdigit() for c in _DATE.sub("", value)) <= MAX_LABEL_DIGITS
            and _EMAIL_LIKE.search(value) is None)


# Pairwise outcome: in a battle key (m1, m2, outcome) with m1 < m2, "a" = m1 won; in a pairwise
# feedback item, "a" = response a won. "both_bad" counts as a tie in the leaderboard.
OUTCOMES = ("a", "b", "tie", "both_bad")
THUMBS = ("up", "down")
IMPLICIT_SIGNALS = ("thanks", "correction", "rephrase")  # node/implicit.py finds them

MAX_BOUND = 1000  # largest contribution bound a query may ask for
DEFAULT_BINS = 5


class Param:
    """Query parameters (protos/query.proto `Query.params`: string -> string)."""

    MODELS = "models"  # JSON list of public model names
    LANGUAGES = "languages"
    DIMENSIONS = "dimensions"
    TOPICS = "topics"
    BINS = "bins"
    MAX_PARTITIONS = "max_partitions"  # contribution bounds per contributor
    MAX_ROWS_PER_PARTITION = "max_rows_per_partition"
    KEY = "key"  # discover_keys: which KEY_TYPES to discover (max_partitions: keys per contributor)


class QueryError(ValueError):
    """A malformed query (the message names the parameter)."""


def list_param(params: dict, name: str, required: bool = True) -> list[str]:
    """A parameter holding a JSON list of non-empty public labels, de-duplicated in order."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise QueryError(f"query parameter {name!r} (a JSON list of public labels) is required")
        return []
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):  # nesting past the stack is refused, not a traceback
        raise QueryError(f"query parameter {name!r} is not JSON: {raw[:80]!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise QueryError(f"query parameter {name!r} must be a JSON list of non-empty strings")
    return list(dict.fromkeys(value))


def int_param(params: dict, name: str, default: int, lo: int = 1, hi: int = MAX_BOUND) -> int:
    """An integer parameter in lo..hi (`default` when absent)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise QueryError(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise QueryError(f"query parameter {name!r} must be in {lo}..{hi}, got {v}")
    return v


def rating_bins(params: dict) -> int:
    """How many equal bins a rating_histogram cuts each dimension's scale into."""
    return int_param(params, Param.BINS, DEFAULT_BINS, 2, 100)


def partitions(kind: str, params: dict) -> list[tuple[str, ...]]:
    """The public cells of a query, in the canonical order of its answer.

    | kind              | cells                                                           |
    |-------------------|-----------------------------------------------------------------|
    | battle_counts     | (m1, m2, outcome), m1 < m2 from `models`, outcome in OUTCOMES   |
    | thumbs_rates      | (model, "up"/"down") from `models`                              |
    | rating_histogram  | (dimension, bin) from `dimensions`, bins 0..`bins`-1            |
    | coverage          | ("language", l), ("model", m), ("topic", t)                     |
    | implicit_feedback | (signal,) for each of IMPLICIT_SIGNALS                          |
    | policy_objections | ("objected",)                                                   |
    """
    if kind == "battle_counts":
        models = sorted(list_param(params, Param.MODELS))
        return [(a, b, o) for a, b in combinations(models, 2) for o in OUTCOMES]
    if kind == "thumbs_rates":
        return [(m, t) for m in list_param(params, Param.MODELS) for t in THUMBS]
    if kind == "rating_histogram":
        bins = rating_bins(params)
        return [(d, str(i)) for d in list_param(params, Param.DIMENSIONS) for i in range(bins)]
    if kind == "coverage":
        out: list[tuple[str, ...]] = [("language", x) for x in list_param(params, Param.LANGUAGES, False)]
        out += [("model", x) for x in list_param(params, Param.MODELS, False)]
        out += [("topic", x) for x in list_param(params, Param.TOPICS, False)]
        if not out:
            raise QueryError("coverage needs at least one of 'languages', 'models', 'topics'")
        return out
    if kind == "implicit_feedback":
        return [(s,) for s in IMPLICIT_SIGNALS]
    if kind == "policy_objections":
        return [("objected",)]
    raise QueryError(f"unknown query kind {kind!r} (known: {', '.join(QUERY_KINDS)})")


# --- public vocabularies (labels only; nothing here comes from a node's data) ---------------------

PUBLIC_MODELS = (
    # Tulu-1 human eval (Wang et al. 2023, "How Far Can Camels Go?", https://arxiv.org/abs/2306.04751)
    "chatgpt", "tulu_65B", "tulu_7B", "tulu_human_only_65B",
    # PandaLM human test set (Wang et al. 2023, "PandaLM", https://arxiv.org/abs/2306.05087)
    "bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b",
    # common Chatbot Arena names
    "gpt-4", "gpt-3.5-turbo", "claude-v1", "claude-instant-v1", "vicuna-13b", "koala-13b", "alpaca-13b",
    "llama-13b", "oasst-pythia-12b", "chatglm-6b", "dolly-v2-12b", "fastchat-t5-3b", "stablelm-tuned-alpha-7b",
)
PUBLIC_LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "nl", "ru", "zh", "ja", "ko", "ar", "hi", "sw", "yo", "unknown")
PUBLIC_DIMENSIONS = ("overall", "helpfulness", "correctness", "coherence", "complexity", "verbosity", "harmlessness",
                     "honesty", "instruction_following", "fluency", "relevance", "safety", "factuality")
# Topic labels a node assigns locally by keywords (node/queries.py); "other" when none matches.
PUBLIC_TOPICS = ("health", "law", "code", "math", "writing", "science", "business", "everyday", "other")
