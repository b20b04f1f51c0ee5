"""The registry of policies by name, and rebuilding a policy from its snapshot or its saved file.

``POLICIES`` maps each registered name to its class; a snapshot names its policy, so snapshots and saved
files stay loadable as long as these names (and the classes' parameters) do.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from keyart.errors import SnapshotError, ValidationError
from keyart.policies.base import SNAPSHOT_FORMAT, Policy
from keyart.policies.counts import BetaThompson, GreedyBandit, UniformPolicy
from keyart.policies.linear import EpsilonGreedy, LinUCB, Softmax
from keyart.policies.logistic import LogisticUCB
from keyart.policies.thompson import LinearThompson, LogisticThompson

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        UniformPolicy,
        BetaThompson,
        GreedyBandit,
        EpsilonGreedy,
        Softmax,
        LinUCB,
        LinearThompson,
        LogisticThompson,
        LogisticUCB,
    )
}

#: The policy ``keyart serve``, ``keyart train``, ``keyart spark train`` and the demo use unless told: the
#: one that won on the world zoo's development seeds (docs/simulation.md, "How the defaults were chosen").
DEFAULT_POLICY = "logistic_ucb"


def make_policy(name: str, **params: Any) -> Policy:
    """Build a registered policy by name."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValidationError(f"Unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}.") from None
    return cls(**params)


def restore_policy(snapshot: dict[str, Any]) -> Policy:
    """Rebuild a policy from ``Policy.snapshot()``."""
    try:
        if snapshot["format"] != SNAPSHOT_FORMAT:
            raise SnapshotError(f"Snapshot format {snapshot['format']!r} is not {SNAPSHOT_FORMAT}.")
        cls = POLICIES[snapshot["policy"]]
        policy = cls(**snapshot["params"])
        policy._set_state(dict(snapshot["state"]))
        policy.version_ = int(snapshot["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"Corrupt or incompatible snapshot: {exc!r}.") from exc
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read a policy written by ``Policy.save``."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(bytes(z["__header__"]).decode())
            header["state"].update({k: z[k] for k in z.files if k != "__header__"})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # missing, truncated, empty
        raise SnapshotError(f"Cannot read policy snapshot {path}: {exc!r}.") from exc
    return restore_policy(header)
