"""The A3C metrics contract (prefix ``dojo_a3c_``), reported by the parameter server."""

from services.common.metrics import define

TAGS = ("run", "env", "mode")

FRAMES = define("dojo_a3c_frames", "counter", "Environment frames consumed by all workers", TAGS)
EPISODES = define("dojo_a3c_episodes", "counter", "Finished training episodes (whole games)", TAGS)
EPISODE_RETURN = define(
    "dojo_a3c_episode_return", "gauge", "Undiscounted return of the last finished training episode", TAGS
)
RETURN_MEAN_100 = define(
    "dojo_a3c_return_mean_100", "gauge", "Mean return of the last 100 training episodes", TAGS
)
ENTROPY = define("dojo_a3c_policy_entropy", "gauge", "Mean policy entropy of the last applied gradient", TAGS, unit="nats")
VALUE_LOSS = define("dojo_a3c_value_loss", "gauge", "Value loss 0.5*(R-V)^2 of the last applied gradient", TAGS)
POLICY_LOSS = define("dojo_a3c_policy_loss", "gauge", "Policy loss -A*log(pi) of the last applied gradient", TAGS)
GRAD_NORM = define("dojo_a3c_grad_norm", "gauge", "Gradient L2 norm before clipping (last applied gradient)", TAGS)
GRADS_APPLIED = define("dojo_a3c_grads_applied", "counter", "Gradients applied by the parameter server", TAGS)
GRADS_DROPPED = define(
    "dojo_a3c_grads_dropped", "counter", "Gradients dropped for exceeding the staleness bound", TAGS
)
STALENESS = define(
    "dojo_a3c_staleness", "histogram",
    "Server version minus the weight version a gradient was computed on", TAGS,
    boundaries=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
FPS = define("dojo_a3c_frames_per_second", "gauge", "Whole-system training throughput", TAGS, unit="frames/s")
WORKER_RESTARTS = define(
    "dojo_a3c_worker_restarts", "counter", "Rollout-worker actors that died and were replaced", TAGS
)
SERVER_RESTARTS = define(
    "dojo_a3c_server_restarts", "counter", "Parameter-server restarts (restored from the last checkpoint)", TAGS
)

ALL = [FRAMES, EPISODES, EPISODE_RETURN, RETURN_MEAN_100, ENTROPY, VALUE_LOSS, POLICY_LOSS, GRAD_NORM,
       GRADS_APPLIED, GRADS_DROPPED, STALENESS, FPS, WORKER_RESTARTS, SERVER_RESTARTS]
