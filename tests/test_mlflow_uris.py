"""seqpipe sets MLflow's process-wide URIs only inside ``mlflow_uris`` and puts them back exactly."""

from __future__ import annotations

import os
import threading

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from seqpipe.tracking.store import connect, mlflow_uris, tracking_uri

VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _state() -> tuple:
    return tracking_utils._tracking_uri, registry_utils._registry_uri, {v: os.environ.get(v) for v in VARIABLES}


def test_connect_leaves_no_uri_set_and_its_client_names_both_stores(cfg):
    before = _state()
    client, _ = connect(cfg)
    assert _state() == before
    assert client.tracking_uri == tracking_uri(cfg) and client._registry_uri == tracking_uri(cfg)


def test_the_scope_sets_both_uris_without_exporting_them_and_restores_them(tmp_path):
    uri = f"sqlite:///{tmp_path}/a.db"
    before = _state()
    with mlflow_uris(uri):
        assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
        # Not exported: a child process or a later connect() does not inherit this store.
        assert {v: os.environ.get(v) for v in VARIABLES} == before[2]
    assert _state() == before


def test_the_scope_restores_uris_and_variables_a_user_had_set(tmp_path, monkeypatch):
    user = f"sqlite:///{tmp_path}/user.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user-server:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://user-registry:5000")
    previous = tracking_utils._tracking_uri, registry_utils._registry_uri
    try:
        tracking_utils._tracking_uri, registry_utils._registry_uri = user, user
        before = _state()
        # An HTTP store is contacted only by requests, so building this client creates nothing.
        client = MlflowClient(tracking_uri="http://127.0.0.1:9/a", registry_uri="http://127.0.0.1:9/b")
        with pytest.raises(ValueError), mlflow_uris(client):
            assert mlflow.get_tracking_uri().endswith("/a") and mlflow.get_registry_uri().endswith("/b")
            raise ValueError("the block fails")
        assert _state() == before
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = previous


def test_overlapping_scopes_of_one_store_restore_only_when_the_last_leaves(tmp_path):
    uri, other = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    before = _state()
    inside, release, seen = threading.Event(), threading.Event(), {}

    def training_thread() -> None:
        with mlflow_uris(uri):
            inside.set()
            release.wait(30)
            seen["after the main thread left"] = mlflow.get_tracking_uri()

    thread = threading.Thread(target=training_thread)
    thread.start()
    assert inside.wait(30)
    with mlflow_uris(uri):
        assert mlflow.get_tracking_uri() == uri
        with pytest.raises(RuntimeError):  # another store inside one's own block: an error, not a deadlock
            with mlflow_uris(other):
                pass
    assert mlflow.get_tracking_uri() == uri  # the training thread still holds it
    release.set()
    thread.join(30)
    assert seen == {"after the main thread left": uri}
    assert _state() == before
    with mlflow_uris(other):  # free again for another store
        assert mlflow.get_registry_uri() == other
    assert _state() == before
