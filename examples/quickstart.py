"""Quickstart: estimate pi by Monte Carlo over a small parameter grid.

Two parameters (sample count x sampler) times three seed replicates give 12
runs.  Each run records a final metric, a stepped metric (the running estimate),
a log line and a JSON artifact.  Everything lands in ./experiments/ (a
FileStore); running the script again skips the runs that already succeeded.

Run it with:  python examples/quickstart.py
"""

from __future__ import annotations

import math

import metalab


@metalab.operation
def estimate_pi(params, seeds, capture):
    """Throw points in the unit square; the fraction inside the quarter circle ~ pi/4."""
    rng = seeds.rng("points")
    n, sampler = params["n_samples"], params["sampler"]
    inside = 0
    checkpoints = {}
    x = y = 0.0
    for i in range(1, n + 1):
        if sampler == "antithetic" and i % 2 == 0:
            x, y = 1.0 - x, 1.0 - y  # mirror the previous point: negatively correlated pairs
        else:
            x, y = rng.random(), rng.random()
        inside += x * x + y * y <= 1.0
        if i % (n // 5) == 0:
            running = 4.0 * inside / i
            capture.metric("running_estimate", running, step=i)
            checkpoints[i] = running
    estimate = 4.0 * inside / n
    capture.metric("pi_estimate", estimate)
    capture.metric("abs_error", abs(estimate - math.pi))
    capture.log(f"{sampler} sampler, {n} points: pi ~ {estimate:.5f}")
    capture.artifact("checkpoints", {"step": list(checkpoints), "estimate": list(checkpoints.values())})


experiment = metalab.Experiment(
    name="pi_mc",
    version="1.0",
    context={"target": "pi"},
    operation=estimate_pi,
    params=metalab.grid(n_samples=[2_000, 20_000], sampler=["plain", "antithetic"]),
    seeds=metalab.seeds(base=42, replicates=3),
    description="Monte Carlo estimate of pi",
)


def main() -> None:
    handle = metalab.run(experiment, store="./experiments")
    handle.result()  # wait until every run has finished

    results = metalab.load_results("./experiments", experiment_id=experiment.experiment_id)
    df = results.to_dataframe().sort_values(["params.n_samples", "params.sampler", "run_id"])
    columns = ["run_id", "status", "params.n_samples", "params.sampler", "pi_estimate", "abs_error"]
    print(f"{len(results)} runs of {experiment.experiment_id}")
    print(df[columns].to_string(index=False))


if __name__ == "__main__":
    main()
