"""The engine is chosen from the spec's `training.engine` in one place (`resources.engine_for`): the frame
inputs of every stage name it for the IO manager, the kinds follow it, and a local model's steps never reach for
the Dask cluster."""

from __future__ import annotations

import dagster as dg
import pytest

from ml_platform.core.engine import ENGINE_KEY, DaskEngine, LocalEngine
from ml_platform.defs import build_definitions
from ml_platform.defs.resources import DaskCluster, engine_for, engine_step
from ml_platform.spec import load_spec

FRAME_INPUTS = {"training_set": "features", "model": "training_set", "evaluation": "training_set"}
FRAME_INPUTS |= {"predictions": "features", "drift": "features"}


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_every_frame_input_names_the_engine_the_spec_chose(engine, home, tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path, {"training.engine": engine}))
    chosen = engine_for(spec)
    assert type(chosen) is {"local": LocalEngine, "dask": DaskEngine}[engine]
    graph = build_definitions([spec]).get_repository_def().asset_graph
    for stage, upstream in FRAME_INPUTS.items():
        assets_def = graph.assets_def_for_key(dg.AssetKey([spec.name, stage]))
        inputs = {d.name: d for d in assets_def.node_def.input_defs}
        assert inputs[upstream].metadata[ENGINE_KEY] == chosen.name, stage
    model = graph.assets_def_for_key(dg.AssetKey([spec.name, "model"])).specs_by_key
    assert ("dask" in next(iter(model.values())).kinds) == chosen.on_cluster


def test_a_local_step_never_reaches_for_the_cluster(home, tmp_path, write_spec):
    """A scheduler that does not answer is not asked: the local engine has no cluster to check or report."""
    spec = load_spec(write_spec(tmp_path, {}))
    nowhere = DaskCluster(address="tcp://127.0.0.1:9")
    with engine_step(spec, nowhere, object()) as (engine, cluster):
        assert isinstance(engine, LocalEngine) and cluster == {}


def test_a_dask_engine_without_a_cluster_loads_but_does_not_compute(home, tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path, {"training.engine": "dask"}))
    with pytest.raises(ValueError, match="computes on a Dask client; none was given"):
        engine_for(spec).check_fits()
