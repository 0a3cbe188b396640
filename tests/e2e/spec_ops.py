"""Operations for the end-to-end spec tests (importable by worker processes)."""

from __future__ import annotations

import metalab


@metalab.operation
def square(params, seeds, capture):
    rng = seeds.rng()
    capture.metric("y", params["x"] ** 2)
    capture.metric("noise", rng.random())
    for step in range(3):
        capture.metric("loss", 1.0 / (step + 1), step=step)
    capture.log(f"x={params['x']}")
    capture.artifact("summary", {"x": params["x"]})


def make_exp(name: str = "my_exp", version: str = "1.0") -> metalab.Experiment:
    return metalab.Experiment(
        name=name,
        version=version,
        context={"dataset": "toy"},
        operation=square,
        params=metalab.grid(x=[1, 2, 3]),
        seeds=metalab.seeds(base=7, replicates=2),
    )
