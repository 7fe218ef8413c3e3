"""The parameter server on a GPU (`--ps-gpus`): placement and learning (runs only with CUDA)."""

import pytest

from services.a3c.train import TrainArgs, train

pytestmark = pytest.mark.gpu


def test_parameter_server_on_gpu_learns(ray_local, tmp_path):
    import ray

    if ray.cluster_resources().get("GPU", 0) < 0.5:
        pytest.skip("the session's Ray sees no GPU")
    args = TrainArgs(run_dir=str(tmp_path / "run"), target_return=475.0, ps_gpus=0.5)
    args.validate()
    res = train(args)
    assert res["target_reached"], res
