"""`keyart train` (keyart.train): snapshots from keyart logs that serve and evaluate load, additive merges
equal to training on the union, evaluate --state-dir, and bad inputs that write nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from keyart.catalog import Catalog
from keyart.cli import EXIT_INPUT, app
from keyart.context import MemberContext
from keyart.errors import ValidationError
from keyart.features import Featurizer, exact_vocabularies
from keyart.policies import DEFAULT_POLICY, load_policy, make_policy
from keyart.train import TrainingInfo, merge_snapshots
from logs_helpers import T0, write_logs
from test_service_support import ServiceProcess

MID = T0 + 2_000.0


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """400 members x 3 titles shown uniformly random artwork ('face' plays most; logs_helpers)."""
    return write_logs(tmp_path_factory.mktemp("train"))


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _train(logs: Path, out: Path, *extra: object) -> tuple[int, str, str]:
    return run("train", logs / "events.duckdb", "--catalog", logs / "catalog.json", "--out", out, *extra)


def test_train_writes_a_snapshot_that_learned_the_better_artwork(logs, tmp_path):
    code, out, err = _train(logs, tmp_path / "m.npz", "--policy", "linucb")
    assert code == 0, err
    assert "trained on 1200 decisions" in out
    policy = load_policy(tmp_path / "m.npz")
    info = TrainingInfo.load(tmp_path / "m.npz")
    assert info is not None and info.rows == 1200 and info.learned_until == T0 + 86_400.0 - 3_600.0
    feat = Featurizer(Catalog.load(logs / "catalog.json"))
    page = feat.page(MemberContext("new", timestamp=T0 + 1e5), [f"t{i}" for i in range(6)])
    best = np.argmax(np.where(page.mask, policy.scores(page), -np.inf), axis=1)
    assert all(page.artwork_ids[i, best[i]].endswith("-a2") for i in range(6))  # a2: the 'face' artwork


def test_train_reads_a_parquet_export_and_a_state_directory_alike(logs, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "events.duckdb").write_bytes((logs / "events.duckdb").read_bytes())
    outs = []
    for i, source in enumerate((logs / "export", state, logs / "events.duckdb")):
        code, _, err = run(
            "train", source, "--catalog", logs / "catalog.json", "--out", tmp_path / f"{i}.npz"
        )
        assert code == 0, err
        outs.append(load_policy(tmp_path / f"{i}.npz").snapshot()["state"])
    for other in outs[1:]:
        for key in ("P_ss", "P_sa", "P_d", "eta_s", "eta_a"):
            np.testing.assert_allclose(other[key], outs[0][key], rtol=0, atol=1e-12)


def _aligned(state: dict, ids: list[str]) -> dict[str, np.ndarray]:
    rows = [state["artwork_ids"].index(a) for a in ids]
    return {
        "P_ss": np.asarray(state["P_ss"]),
        "eta_s": np.asarray(state["eta_s"]),
        "P_sa": np.asarray(state["P_sa"])[rows],
        "P_d": np.asarray(state["P_d"])[rows],
        "eta_a": np.asarray(state["eta_a"])[rows],
    }


@pytest.mark.parametrize(
    ("policy", "params"), [("linucb", ["--param", "priors=fixed"]), ("linucb", []), ("beta_ts", [])]
)
def test_merge_of_two_date_ranges_equals_training_on_both(logs, tmp_path, policy, params):
    """Sums merge exactly; learned priors (the default), fitted on all the data from the same start in
    both, agree to the fit's tolerance and the data parts exactly."""
    args = ["--policy", policy, *params, "--quiet"]
    assert _train(logs, tmp_path / "a.npz", *args, "--end", MID)[0] == 0
    assert _train(logs, tmp_path / "b.npz", *args, "--start", "2023-11-14T22:46:40Z")[0] == 0  # = MID
    assert _train(logs, tmp_path / "all.npz", *args)[0] == 0
    code, _, err = run(
        "train", "--merge", tmp_path / "a.npz", tmp_path / "b.npz", "--out", tmp_path / "m.npz"
    )
    assert code == 0, err
    a, b = TrainingInfo.load(tmp_path / "a.npz"), TrainingInfo.load(tmp_path / "b.npz")
    assert a is not None and b is not None and a.rows and b.rows and a.rows + b.rows == 1200
    merged, union = load_policy(tmp_path / "m.npz").snapshot(), load_policy(tmp_path / "all.npz").snapshot()
    ids = list(union["state"]["artwork_ids"])
    assert sorted(merged["state"]["artwork_ids"]) == sorted(ids)
    if policy == "beta_ts":
        for key in ("successes", "trials"):
            got = np.asarray(merged["state"][key])[[merged["state"]["artwork_ids"].index(x) for x in ids]]
            np.testing.assert_allclose(got, union["state"][key], rtol=0, atol=1e-9)
        return
    m, u = _aligned(merged["state"], ids), _aligned(union["state"], ids)
    if not params:  # learned priors: the data parts exactly, the priors to the fit's tolerance
        for key, state in (("m", merged["state"]), ("u", union["state"])):
            got = m if key == "m" else u
            got["P_ss"] = got["P_ss"] - np.diag(state["ridge_cols"])
            got["P_d"] = got["P_d"] - state["bias_ridge"]
        for key in ("ridge_cols", "bias_ridge", "noise"):
            np.testing.assert_allclose(merged["state"][key], union["state"][key], rtol=1e-6, err_msg=key)
    for key in m:
        np.testing.assert_allclose(m[key], u[key], rtol=0, atol=1e-9, err_msg=key)
    assert merged["state"]["events"] == union["state"]["events"] == 1200
    assert TrainingInfo.load(tmp_path / "m.npz").rows == 1200  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (("logistic_ts", {}), ("logistic_ts", {}), "do not merge exactly"),
        (("linucb", {"priors": "fixed", "half_life": 100.0}), ("linucb", {"priors": "fixed"}), "half_life"),
        (("linucb", {"priors": "fixed"}), ("linear_ts", {"priors": "fixed"}), "same parameters"),
    ],
)
def test_merges_that_would_not_be_exact_are_refused(a, b, match):
    with pytest.raises(ValidationError, match=match):
        merge_snapshots(make_policy(a[0], seed=0, **a[1]), make_policy(b[0], seed=0, **b[1]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "m.npz"], "needs --catalog"),
        (["--catalog", "CAT", "--out", "m.txt"], "--out must be a .npz file"),
        (["--catalog", "CAT", "--out", "m.npz", "--policy", "nope"], "Unknown policy 'nope'"),
        (["--catalog", "CAT", "--out", "m.npz", "--param", "alpha"], "--param takes FIELD=VALUE"),
        (
            ["--catalog", "CAT", "--out", "m.npz", "--start", "soon"],
            "--start must be epoch seconds or an ISO",
        ),
        (["--catalog", "CAT", "--out", "m.npz", "--start", str(T0 + 1e6)], "No decision to learn from"),
    ],
)
def test_train_bad_inputs_are_one_line_and_write_nothing(logs, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = [str(logs / "catalog.json") if a == "CAT" else a for a in args]
    code, _, err = run("train", logs / "events.duckdb", *args)
    assert code == EXIT_INPUT and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_train_of_something_that_is_not_logs_is_refused(logs, tmp_path):
    code, _, err = run("train", tmp_path, "--catalog", logs / "catalog.json", "--out", tmp_path / "m.npz")
    assert code == EXIT_INPUT and "No keyart logs at" in err
    code, _, err = run("train", "--merge", tmp_path / "x.npz", "--out", tmp_path / "m.npz")
    assert code == EXIT_INPUT and "--merge takes two or more snapshot files" in err


def test_evaluate_reads_a_state_directory_and_the_trained_snapshot(logs, tmp_path):
    assert _train(logs, tmp_path / "m.npz", "--quiet")[0] == 0
    state = tmp_path / "state"
    state.mkdir()
    (state / "events.duckdb").write_bytes((logs / "events.duckdb").read_bytes())
    code, _, err = run("evaluate", "--state-dir", state, "--candidate", tmp_path / "m.npz", "--quiet")
    assert code == EXIT_INPUT and "catalog.json" in err  # a state directory without its catalog
    Catalog.load(logs / "catalog.json").save(state / "catalog.json")
    out = tmp_path / "out"
    code, _, err = run(
        "evaluate", "--state-dir", state, "--candidate", tmp_path / "m.npz", "--estimator", "snips",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    row = (out / "evaluation.csv").read_text().splitlines()[1].split(",")
    assert (
        row[0] == f'"{DEFAULT_POLICY}:m"' and float(row[2]) > 0.4
    )  # face artworks: 0.7; uniform logging: ~0.33
    code, _, err = run(
        "evaluate", logs / "events.duckdb", "--state-dir", state, "--candidate", tmp_path / "m.npz"
    )
    assert code == EXIT_INPUT and "not both" in err


def test_serve_policy_file_serves_the_trained_model_over_http(logs, tmp_path):
    assert _train(logs, tmp_path / "m.npz", "--quiet")[0] == 0
    trained = load_policy(tmp_path / "m.npz")
    state = tmp_path / "state"
    state.mkdir()
    extra = ["--policy", str(tmp_path / "m.npz"), "--no-learner", "--model-budget", "5"]
    with ServiceProcess(state, extra=extra, catalog=logs / "catalog.json") as srv:
        model = httpx.get(srv.base + "/v1/model", timeout=10.0).json()
        assert model["policy"] == DEFAULT_POLICY and model["model_version"] == trained.version_
        assert model["learned_until"] == T0 + 86_400.0 - 3_600.0 and model["generation"] == 0
        body = {
            "member_id": "new",
            "title_ids": [f"t{i}" for i in range(6)],
            "context": {"timestamp": T0 + 1e5},
        }
        out = httpx.post(srv.base + "/v1/decide", json=body, timeout=10.0).json()
    assert not any(d["fallback"] for d in out["decisions"])
    assert sum(d["artwork_id"].endswith("-a2") for d in out["decisions"]) >= 5  # 1 - floor: 0.93 each


def test_evaluate_and_gate_featurize_a_candidate_as_its_model_was_trained(logs, tmp_path):
    """A model trained with the declared layout alone (another width than the default, every cross) records
    its FeatureConfig; evaluate and gate featurize the log with it, beside a default-featurized candidate in
    the same run."""
    from keyart.layout import FeatureConfig
    from keyart.train import train

    catalog = Catalog.load(logs / "catalog.json")
    lean = FeatureConfig(crosses=())
    base = make_policy("linucb", seed=0, floor=0.1)
    policy, _ = train([logs / "events.duckdb"], catalog, base, features=lean)
    assert policy.features_ == lean and policy.dim_ == lean.dim != FeatureConfig().dim
    policy.save(tmp_path / "lean.npz")
    assert _train(logs, tmp_path / "default.npz", "--quiet")[0] == 0
    out = tmp_path / "out"
    code, _, err = run(
        "evaluate", logs / "events.duckdb", "--fmt", "keyart", "--catalog", logs / "catalog.json",
        "--candidate", tmp_path / "lean.npz", "--candidate", tmp_path / "default.npz", "--estimator", "snips",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    rows = [r.split(",") for r in (out / "evaluation.csv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == {'"linucb:lean"', f'"{DEFAULT_POLICY}:default"'}
    assert all(float(r[2]) > 0.4 for r in rows)  # both learned the 'face' artworks (0.7; uniform ~0.33)
    code, _, err = run(
        "gate",
        logs / "events.duckdb",
        "--catalog",
        logs / "catalog.json",
        "--candidate",
        tmp_path / "lean.npz",
    )
    assert code in (0, 1), err  # a verdict, not a width error


def test_serve_featurizes_each_model_as_it_was_trained(logs, tmp_path):
    """A primary trained with the declared layout alone and a shadow of the default (every cross), served
    side by side: each model gets rows of its own featurization (no fallback, the shadow's decisions
    counted), and the learner's updates featurize per model too."""
    from keyart.layout import FeatureConfig
    from keyart.rewards import join_store
    from keyart.service.config import ServiceConfig
    from keyart.service.metrics import Metrics
    from keyart.service.training import CHUNK, update_policies
    from keyart.store import EventStore
    from keyart.train import train

    catalog = Catalog.load(logs / "catalog.json")
    lean = FeatureConfig(crosses=())
    base = make_policy("linucb", seed=0, floor=0.1)
    train([logs / "events.duckdb"], catalog, base, features=lean)[0].save(tmp_path / "lean.npz")
    assert _train(logs, tmp_path / "default.npz", "--quiet")[0] == 0
    state = tmp_path / "state"
    state.mkdir()
    extra = ["--policy", str(tmp_path / "lean.npz"), "--shadow-policy", str(tmp_path / "default.npz")]
    extra += ["--no-learner", "--model-budget", "5"]
    body = {"member_id": "new", "title_ids": [f"t{i}" for i in range(6)], "context": {"timestamp": T0 + 1e5}}
    with ServiceProcess(state, extra=extra, catalog=logs / "catalog.json") as srv:
        out = httpx.post(srv.base + "/v1/decide", json=body, timeout=10.0).json()
        metrics = httpx.get(srv.base + "/metrics", timeout=10.0).text
    assert not any(d["fallback"] for d in out["decisions"])
    assert sum(d["artwork_id"].endswith("-a2") for d in out["decisions"]) >= 5
    assert f'keyart_shadow_decisions_total{{policy="{DEFAULT_POLICY}"}} 6.0' in metrics
    # the learner's update: one featurizer per model, each model learns from rows of its own width
    config = ServiceConfig(state_dir=str(state))
    models = [load_policy(tmp_path / "lean.npz"), load_policy(tmp_path / "default.npz")]
    featurizers = [Featurizer(catalog, config.features_for(p)) for p in models]
    assert [f.dim for f in featurizers] == [lean.dim, exact_vocabularies(catalog).dim]  # keyart train's
    with EventStore(logs / "events.duckdb", read_only=True) as store:
        rewards = join_store(store)
    versions = [p.version_ for p in models]
    assert update_policies(models, rewards, featurizers, Metrics()) == set()
    chunks = -(-rewards.table.num_rows // CHUNK)
    assert rewards.table.num_rows > 0 and [p.version_ for p in models] == [v + chunks for v in versions]


def test_a_trained_models_priors_are_the_evidences_maximum_whatever_the_optimizer(logs, monkeypatch):
    """The final fit of ``keyart train`` goes to the maximum (``TRAIN_PRIOR_TOL``): Newton and L-BFGS-B
    end at the same priors, where the evidence's flat families (a ridge at the cap) no longer depend on
    the path an optimizer took."""
    import keyart.priors
    from keyart.train import train

    fits = {}
    for method in ("newton", "lbfgs"):
        monkeypatch.setattr(keyart.priors, "FIT_METHOD", method)
        policy, _ = train(
            [logs / "events.duckdb"], Catalog.load(logs / "catalog.json"), make_policy("linucb", seed=0)
        )
        fits[method] = policy.learned_priors()
    families = fits["newton"]["families"]
    assert any(f["ridge"] >= 0.99 * keyart.priors.RIDGE_RANGE[1] for f in families.values())  # a flat one
    for name, family in families.items():
        assert np.log(family["ridge"] / fits["lbfgs"]["families"][name]["ridge"]) == pytest.approx(
            0, abs=1e-2
        )
    assert fits["newton"]["noise"] == pytest.approx(fits["lbfgs"]["noise"], rel=1e-6)
