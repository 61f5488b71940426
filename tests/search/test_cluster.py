"""A real Ray cluster started outside castsearch: a head and a second node joined with
``ray start --address``, both on 127.0.0.1 with one CPU each, and ``castsearch run
--address`` spreading trials over both."""

from __future__ import annotations

import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from tests.search.infra_helpers import castsearch, make_image_folder, ray_cluster, write_space


@pytest.mark.slow  # a two-node Ray cluster (40 s): make test-all and CI run it
def test_castsearch_run_uses_both_nodes_of_a_ray_cluster(tmp_path):
    data = make_image_folder(tmp_path / "images")
    space = write_space(tmp_path, study="cluster", data=data, trials=4, epochs=2)
    storage = f"sqlite:///{tmp_path}/cluster.db"
    with ray_cluster(cpus_per_node=(1, 1)) as cluster:
        assert len(cluster.node_ids) == 2
        run = subprocess.run(
            castsearch("run", str(space), "--storage", storage, "--workers", "2", "--address", cluster.address,
                       "--artifacts", str(tmp_path / "artifacts")),
            env=cluster.env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "4 trials finished" in run.stdout

    study = optuna.load_study(study_name="cluster", storage=storage)
    trials = [t for t in study.trials if not t.user_attrs.get("invalid")]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [(t.number, t.state, t.user_attrs.get("error"))
                                                                     for t in trials]
    nodes = {t.user_attrs["node_id"] for t in trials}
    # one CPU per node and two trials at once: both nodes ran trials, and only these two
    assert nodes == set(cluster.node_ids)
