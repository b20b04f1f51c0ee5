"""The decision service's configuration: one frozen dataclass, passed to worker processes as JSON.

Everything a worker or the learner needs to agree on lives here (state directory, policy and its seed,
limits, cadences), so that several worker processes started by uvicorn serve exactly the same thing.
"""

from __future__ import annotations

import json
import os
import secrets
import weakref
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from keyart.catalog import Catalog
from keyart.errors import ValidationError
from keyart.features import FeatureConfig, exact_vocabularies
from keyart.policies import DEFAULT_POLICY, model_features
from keyart.rewards import ATTRIBUTION_WINDOW_SECONDS, QUALITY_SECONDS

#: policy -> (the FeatureConfig its model recorded, its serving one: ``ServiceConfig.features_for``),
#: dropped with the policy
_SERVING_FEATURES: weakref.WeakKeyDictionary[Any, tuple[FeatureConfig | None, FeatureConfig]] = (
    weakref.WeakKeyDictionary()
)

#: how a policy whose model learned nothing featurizes (``ServiceConfig.feature_config``)
_UNTRAINED_FEATURES = FeatureConfig(on_unknown_history="ignore")

#: Environment variable through which ``keyart serve`` hands its configuration to worker processes.
CONFIG_ENV = "KEYART_SERVICE_CONFIG"
#: prometheus_client's multiprocess directory (read when prometheus_client is first imported).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The file in the state directory that keeps the deployment's exploration key.
KEY_FILE = "exploration.key"
_KEY_BOUND = 2**128  # the policies' seed is a 16-byte key


def _check_key(value: object, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _KEY_BOUND:
        raise ValidationError(f"{source} must be an int in [0, 2**128). Got {value!r}.")
    return value


def exploration_key(root: Path) -> int:
    """The deployment's exploration key (the seed of the sticky keyed hash): read from
    ``<root>/exploration.key``, or drawn from ``secrets`` (128 bits, never 0) and stored there (mode 0600)
    when the state directory has none. Kept secret and per deployment, so members' exploration cannot be
    predicted from a public default. Two processes creating it at once agree (the file is linked into
    place only if absent). A damaged key file is an error, never silently replaced: a new key would move
    every member's sticky artwork."""
    path = root / KEY_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        key = secrets.randbits(128) or 1
        tmp = root / f".{KEY_FILE}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, f"{key}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process stored its key first: theirs is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(
            f"{path} does not hold an exploration key (a decimal int in [0, 2**128)): {text[:40]!r}. "
            "Restore it, or delete it to draw a new key (members' sticky artworks then change)."
        ) from None
    return _check_key(value, str(path))


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for; beyond them the service answers 413 or 422.

    ``max_clock_skew_seconds``: how far past the server's clock a client's ``context.timestamp`` or an
    outcome's ``timestamp`` may lie (event time drives learning, so it must not run ahead of the server).
    """

    max_titles_per_page: int = 100
    max_artworks_per_pool: int = 64
    max_body_bytes: int = 1 << 20
    max_outcomes_per_request: int = 1000
    max_history: int = 1000
    max_clock_skew_seconds: int = 86_400

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValidationError(f"Limits.{f.name} must be a positive int. Got {v!r}.")


@dataclass(frozen=True)
class ServiceConfig:
    """How one keyart service deployment runs.

    ``state_dir`` holds everything: ``catalog.json``, ``events.duckdb`` (decisions and outcomes),
    ``shadow.duckdb`` (shadow decisions), ``service.duckdb`` (direct rewards), ``segments/`` (per-worker
    append-only event logs), ``snapshots/`` (versioned model generations and the ``LATEST`` pointer).
    ``policy``/``policy_params``: the serving policy (``seed`` is the deployment key of the sticky
    randomness: every worker uses the same; ``floor``: every candidate keeps at least floor / K probability,
    so the logs support off-policy evaluation). ``shadow_policy``: optional policy run in shadow.
    ``seed`` None (the default): the deployment's own secret key, generated once and kept in
    ``<state_dir>/exploration.key`` (``exploration_key``); an explicit int in [0, 2**128) overrides it.
    """

    state_dir: str
    policy: str = DEFAULT_POLICY
    policy_params: dict[str, Any] = field(default_factory=dict)
    shadow_policy: str | None = None
    shadow_params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    floor: float = 0.1
    sticky_seconds: float = 86_400.0
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    learn_interval_seconds: float = 2.0
    reload_interval_seconds: float = 0.25
    model_budget_seconds: float = 0.05
    attribution_window_seconds: float = ATTRIBUTION_WINDOW_SECONDS
    quality_min_seconds: float = QUALITY_SECONDS
    fsync: bool = False
    personalize_unknown_members: bool = False
    keep_generations: int = 5
    segment_max_bytes: int = 64 << 20  # a worker's segment is sealed and a new one begun past this size
    # the learner's work per cycle is bounded, so that it publishes while a backlog lasts
    ingest_batch_bytes: int = 8 << 20  # segment bytes read per cycle
    learn_batch_decisions: int = 20_000  # decisions learned per cycle
    # follow mode (keyart.service.follow): serve the generations a training job publishes in follow_dir,
    # no local learner; events go as Parquet, one file per kind and date per window, to events_out
    follow_dir: str | None = None
    events_out: str | None = None
    events_window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.state_dir, str) or not self.state_dir:
            raise ValidationError(f"state_dir must be a non-empty path. Got {self.state_dir!r}.")
        for name in (
            "learn_interval_seconds",
            "reload_interval_seconds",
            "model_budget_seconds",
            "attribution_window_seconds",
            "sticky_seconds",
            "events_window_seconds",
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not v > 0:
                raise ValidationError(f"ServiceConfig.{name} must be > 0. Got {v!r}.")
        for name in ("segment_max_bytes", "ingest_batch_bytes", "learn_batch_decisions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValidationError(f"ServiceConfig.{name} must be a positive integer. Got {v!r}.")
        if self.seed is not None:
            _check_key(self.seed, "ServiceConfig.seed")
        if (self.follow_dir is None) != (self.events_out is None):
            raise ValidationError("ServiceConfig.follow_dir and events_out go together (follow mode).")
        if isinstance(self.limits, dict):
            object.__setattr__(self, "limits", Limits(**self.limits))

    # ---- derived paths --------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.state_dir)

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.duckdb"

    @property
    def shadow_path(self) -> Path:
        return self.root / "shadow.duckdb"

    @property
    def service_db_path(self) -> Path:
        return self.root / "service.duckdb"

    @property
    def segments_dir(self) -> Path:
        return self.root / "segments"

    @property
    def snapshots_dir(self) -> Path:
        """Where the served generations are: ``snapshots/``, or in follow mode the shared directory."""
        return Path(self.follow_dir) if self.follow_dir is not None else self.root / "snapshots"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def feature_config(self) -> FeatureConfig:
        """How requests are featurized for a policy whose model has learned nothing (and so recorded
        nothing): every field hashed; unknown titles in a member's history are ignored, not fatal."""
        return _UNTRAINED_FEATURES

    def new_model_features(self, catalog: Catalog) -> FeatureConfig:
        """What a new model learns on (the learner's first update records it with the model): the
        catalog's exact vocabularies (every genre, cast member, style and tag its own column), and for
        countries, languages and devices empty ones that grow as requests carry them; the learner's
        featurizer grows with new catalog values too (``Featurizer(..., grow=True)``), the model with it."""
        return exact_vocabularies(catalog, base=self.feature_config, grow=True)

    def features_for(self, policy: Any, default: FeatureConfig | None = None) -> FeatureConfig:
        """How to featurize ``policy``'s inputs: the configuration its model recorded (a snapshot trained
        offline with every cross, say), else ``default`` (``feature_config`` when None); unknown titles in
        a history are ignored. Kept on the policy object while its record stays the same (a learning model
        records a new one when it grows), so a generation's policies are resolved once; a policy that
        learned nothing yet takes ``default``, whatever it is."""
        recorded = getattr(policy, "features_", None)
        cached = _SERVING_FEATURES.get(policy)
        if cached is not None and cached[0] is recorded:
            return cached[1]
        features = model_features(policy, default or self.feature_config)
        if features.on_unknown_history != "ignore":
            features = replace(features, on_unknown_history="ignore")
        if recorded is not None or getattr(policy, "dim_", None) is not None:
            _SERVING_FEATURES[policy] = (recorded, features)
        return features

    def exploration_seed(self) -> int:
        """``seed`` when given, else the deployment's stored key (created on first use)."""
        return self.seed if self.seed is not None else exploration_key(self.root)

    def policy_kwargs(self, shadow: bool = False) -> dict[str, Any]:
        """Constructor arguments of the serving (or shadow) policy: shared seed and sticky period."""
        params = dict(self.shadow_params if shadow else self.policy_params)
        if "seed" not in params:
            params["seed"] = self.exploration_seed()
        params.setdefault("sticky_seconds", self.sticky_seconds)
        params.setdefault("floor", self.floor)
        return params

    # ---- transport -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        data = json.loads(text)
        data["limits"] = Limits(**data.get("limits", {}))
        return cls(**data)

    @classmethod
    def from_env(cls) -> ServiceConfig:
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise ValidationError(f"{CONFIG_ENV} is not set: start workers with `keyart serve`.")
        return cls.from_json(text)
