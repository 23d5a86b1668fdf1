"""Adversarial promotion tests (issue 19, items 5-6) against a real MLflow SQLite store in a temp dir.

A crash is a real SIGKILL of a real process between two registry writes (the fault-injection
hook ``BEATEDIT_PROMOTION_FAULT``), at every write of a promotion and of a rollback; the next
run must converge on exactly the state an uninterrupted run leaves. No mocks of MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tasks import registry

REPO = Path(__file__).resolve().parents[2]
MODELS = (registry.POLICY_MODEL, registry.REWARD_MODEL)


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):  # type-hinted: MLflow warns otherwise
        return [0.0] * len(model_input)


def use_store(uri: str) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


@pytest.fixture()
def template(mlflow_store, tmp_path, monkeypatch):
    """A store where p1 (with reward r1) is champion and p2 (with r2) is the evaluated challenger."""
    monkeypatch.delenv(registry.LOCK_FILE_ENV, raising=False)  # the lock must be found next to the store
    monkeypatch.delenv(registry.FAULT_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_store)  # restored after the test (mlflow.set_registry_uri exports it)
    use_store(mlflow_store)
    exp = mlflow.create_experiment("adv", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)

    def new_version(name, tags=None):
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
        return registry.register(info.model_uri, name, tags=tags, aliases=(registry.CHALLENGER,))

    r1 = new_version(registry.REWARD_MODEL)
    p1 = new_version(registry.POLICY_MODEL, {"reward_version": r1})
    assert registry.promote(p1, r1, None, "e1", True, "first").promoted
    r2 = new_version(registry.REWARD_MODEL)
    p2 = new_version(registry.POLICY_MODEL, {"reward_version": r2})
    db = Path(mlflow_store.removeprefix("sqlite:///"))
    return {"db": db, "p1": p1, "r1": r1, "p2": p2, "r2": r2, "dir": tmp_path}


def copy_store(t: dict, name: str) -> str:
    d = t["dir"] / name
    d.mkdir()
    shutil.copy(t["db"], d / "mlflow.db")
    return f"sqlite:///{d / 'mlflow.db'}"


def snapshot(uri: str) -> dict:
    """Every alias and tag of both registered models and of all their versions."""
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = {}
    for m in MODELS:
        rm = c.get_registered_model(m)
        out[m] = {"aliases": {k: str(v) for k, v in rm.aliases.items()}, "tags": dict(rm.tags),
                  "versions": {str(v.version): dict(v.tags) for v in c.search_model_versions(f"name='{m}'")}}
    return out


def assert_consistent(snap: dict) -> None:
    pol, rew = snap[registry.POLICY_MODEL], snap[registry.REWARD_MODEL]
    assert registry.JOURNAL_TAG not in pol["tags"], "a journal was left behind"
    for m in (pol, rew):
        a = m["aliases"]
        assert a.get(registry.PREVIOUS) != a.get(registry.CHAMPION), f"previous-champion == champion: {a}"
    champ = pol["aliases"][registry.CHAMPION]
    assert pol["versions"][champ].get("reward_version") == rew["aliases"][registry.CHAMPION], "policy champion paired with a stale reward champion"


PROMOTE = "d = registry.promote({p2!r}, {r2!r}, {p1!r}, 'e2', True, 'won')"
ROLLBACK = "d = registry.rollback(expected_champion={p2!r})"


def run_op(uri: str, op: str, t: dict, fault: str | None, cwd: Path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import json
        from tasks import registry
        {op.format(**t)}
        print(json.dumps(d.__dict__))
    """)
    env = {k: v for k, v in os.environ.items() if k not in (registry.FAULT_ENV, registry.LOCK_FILE_ENV)}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri, PYTHONPATH=str(REPO))
    if fault:
        env[registry.FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def in_process(uri: str, op: str, t: dict):
    use_store(uri)
    scope = {"registry": registry}
    exec(op.format(**t), scope)
    return scope["d"]


@pytest.mark.parametrize("op_name", ["promote", "rollback"])
def test_kill_at_every_registry_write_then_rerun_converges(template, op_name):
    t = template
    if op_name == "rollback":  # start from the promoted state
        assert in_process(f"sqlite:///{t['db']}", PROMOTE, t).promoted
    op = PROMOTE if op_name == "promote" else ROLLBACK
    clean_uri = copy_store(t, "clean")
    r = run_op(clean_uri, op, t, None, t["dir"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["promoted"]
    want = snapshot(clean_uri)
    assert_consistent(want)
    if op_name == "promote":
        assert want[registry.POLICY_MODEL]["aliases"] == {"champion": t["p2"], "previous-champion": t["p1"], "challenger": t["p2"]}
        assert want[registry.REWARD_MODEL]["aliases"][registry.CHAMPION] == t["r2"]
    else:
        assert want[registry.POLICY_MODEL]["aliases"].get(registry.CHAMPION) == t["p1"]
        assert registry.PREVIOUS not in want[registry.POLICY_MODEL]["aliases"]  # never the version just rolled back
        assert want[registry.REWARD_MODEL]["aliases"][registry.CHAMPION] == t["r1"]

    killed_at = []
    for k in range(40):
        uri = copy_store(t, f"k{k}")
        r = run_op(uri, op, t, f"{k}:kill", t["dir"])
        if r.returncode == 0:  # k is past the last write: the fault never fired
            break
        assert r.returncode == -9, r.stderr  # SIGKILL, between two writes
        killed_at.append(k)
        again = in_process(uri, op, t)  # the same command again must converge
        assert again.promoted, again.reason
        got = snapshot(uri)
        assert_consistent(got)
        assert got == want, f"kill before write {k} did not converge"
    assert len(killed_at) >= 5  # journal + the alias/tag writes + journal removal


@pytest.mark.parametrize("op_name", ["promote", "rollback"])
def test_raise_at_every_write_then_plain_rerun_converges(template, op_name, monkeypatch):
    """The same in-process (an exception instead of a kill), re-running rollback *without* a
    compare-and-set: finishing the interrupted rollback must not roll back a second time."""
    t = template
    if op_name == "rollback":
        assert in_process(f"sqlite:///{t['db']}", PROMOTE, t).promoted
    op = PROMOTE if op_name == "promote" else "d = registry.rollback()"
    clean = copy_store(t, "clean")
    assert in_process(clean, op, t).promoted
    want = snapshot(clean)
    for k in range(40):
        uri = copy_store(t, f"k{k}")
        monkeypatch.setenv(registry.FAULT_ENV, f"{k}:raise")
        try:
            in_process(uri, op, t)
        except registry.InjectedFault:
            pass
        else:
            break
        finally:
            monkeypatch.delenv(registry.FAULT_ENV)
        assert in_process(uri, op, t).promoted
        assert snapshot(uri) == want, f"fault before write {k} did not converge"
    assert k >= 5


def test_decision_applied_once_and_not_after_rollback(template):
    """`beatedit promote` twice is a no-op; after a rollback the same decision.json is refused."""
    t = template
    uri = f"sqlite:///{t['db']}"
    assert in_process(uri, PROMOTE, t).promoted
    before = snapshot(uri)
    again = in_process(uri, PROMOTE, t)
    assert again.promoted and "already applied" in again.reason
    assert snapshot(uri) == before
    assert in_process(uri, ROLLBACK, t).promoted
    stale = in_process(uri, PROMOTE, t)
    assert not stale.promoted and "already applied" in stale.reason
    assert registry.alias_version(registry.POLICY_MODEL, registry.CHAMPION) == t["p1"]
    # rollback is a compare-and-set: run again it reports done, and changes nothing
    after = snapshot(uri)
    twice = in_process(uri, ROLLBACK, t)
    assert twice.promoted and "already rolled back" in twice.reason
    assert snapshot(uri) == after
    other = registry.rollback(expected_champion="999")
    assert not other.promoted and "not 999" in other.reason
    assert snapshot(uri) == after
    # nothing further back than p1: a plain rollback refuses instead of re-promoting p2
    assert not registry.rollback().promoted
    assert registry.alias_version(registry.POLICY_MODEL, registry.CHAMPION) == t["p1"]


def test_lock_is_next_to_the_store_not_the_working_directory(template, tmp_path):
    """A promotion started from another folder waits for the lock held by a process in a first folder."""
    t = template
    uri = f"sqlite:///{t['db']}"
    assert registry.promotion_lock_path(uri) == t["db"].with_name("mlflow.db.promotion.lock")
    here, there = tmp_path / "host-a", tmp_path / "host-b"
    here.mkdir(), there.mkdir()
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        from tasks import registry
        with registry.promotion_lock() as p:
            print(p, flush=True)
            while not os.path.exists({str(release)!r}):
                time.sleep(0.05)
    """)], cwd=here, env={**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == str(t["db"].with_name("mlflow.db.promotion.lock"))
        result = {}
        cwd = os.getcwd()
        os.chdir(there)
        try:
            worker = threading.Thread(target=lambda: result.setdefault("d", registry.promote(t["p2"], t["r2"], t["p1"], "e2", True, "won")))
            worker.start()
            time.sleep(3.0)
            assert worker.is_alive(), "promotion from another folder did not wait for the lock"
            assert registry.alias_version(registry.POLICY_MODEL, registry.CHAMPION) == t["p1"]
            release.touch()
            worker.join(120)
        finally:
            os.chdir(cwd)
        assert result["d"].promoted and registry.alias_version(registry.POLICY_MODEL, registry.CHAMPION) == t["p2"]
    finally:
        release.touch()
        holder.wait(60)


def test_remote_store_without_shared_lock_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(registry.LOCK_FILE_ENV, raising=False)
    with pytest.raises(registry.PromotionLockError, match=registry.LOCK_FILE_ENV):
        registry.promotion_lock_path("http://mlflow.example:5000")
    monkeypatch.setenv(registry.LOCK_FILE_ENV, str(tmp_path / "shared" / "promo.lock"))
    assert registry.promotion_lock_path("http://mlflow.example:5000") == tmp_path / "shared" / "promo.lock"
