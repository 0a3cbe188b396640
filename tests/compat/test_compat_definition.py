"""The original metalab's definition API: distributions, manual tags, resolvers, manifests, seeds."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import compat_ops
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metalab
from metalab import ValidationError
from metalab.definition import (
    ResolvedSource,
    SeedBundle,
    SeedPlan,
    deserialize_param_source,
    deserialize_seed_plan,
    seed_plan_from_manifest,
    source_from_manifest,
)


def _json(d):
    return json.loads(json.dumps(d))


def noop(params):
    return None


def make(params, seeds=None, **kw):
    return metalab.Experiment(name="c", version="1", context={}, operation=noop, params=params,
                              seeds=seeds or metalab.seeds(0, 2), **kw)


# ----------------------------------------------------------- loguniform_int


def test_loguniform_int_draws_rounded_ints_within_bounds_reproducibly():
    src = metalab.random({"width": metalab.loguniform_int(16, 1024)}, n_trials=200, seed=3)
    values = [case.params["width"] for case in src]
    assert all(type(v) is int and 16 <= v <= 1024 for v in values)
    assert min(values) < 64 and max(values) > 256  # log-spread, not stuck at one end
    again = metalab.random({"width": metalab.loguniform_int(16, 1024)}, n_trials=200, seed=3)
    assert [c.params["width"] for c in again] == values
    assert source_from_manifest(_json(src.to_manifest_dict())) == src


@pytest.mark.parametrize(("lo", "hi"), [(0, 10), (-1, 10), (10, 10), (1.5, 10), (True, 10)])
def test_loguniform_int_rejects_bad_bounds(lo, hi):
    with pytest.raises(ValidationError, match="loguniform"):
        metalab.loguniform_int(lo, hi)


# ------------------------------------------------------------ manual tags


def test_manual_tags_go_to_every_case_before_the_index_tag():
    src = metalab.manual([{"lr": 0.1}, {"lr": 0.2}], tags=["baseline", "sgd"])
    assert [c.tags for c in src] == [("baseline", "sgd", "manual_0"), ("baseline", "sgd", "manual_1")]
    assert src[-1].tags == ("baseline", "sgd", "manual_1")
    back = source_from_manifest(_json(src.to_manifest_dict()))
    assert back == src and back[0].tags == src[0].tags
    assert metalab.manual([{"a": 1}])[0].tags == ("manual_0",)


def test_manual_tags_reach_the_run_records(tmp_path):
    exp = make(metalab.manual([{"x": 1}], tags=["baseline"]), seeds=metalab.seeds(0))
    results = metalab.run(exp, store=tmp_path).result()
    assert results[0].tags == ("baseline", "manual_0")


@pytest.mark.parametrize("tags", ["baseline", [1], [""], {"a": 1}])
def test_manual_rejects_bad_tags(tags):
    with pytest.raises(ValidationError, match="tags"):
        metalab.manual([{"a": 1}], tags=tags)


# --------------------------------------------------------------- resolvers


def test_with_resolver_resolves_each_case_and_keeps_tags_and_indexing():
    src = metalab.with_resolver(metalab.grid(n=[1000.0, 10.0]), compat_ops.to_int_resolver)
    assert isinstance(src, ResolvedSource) and len(src) == 2
    assert src[0].params == {"n": 1000, "half": 500} and type(src[0].params["n"]) is int
    assert src[-1].params == {"n": 10, "half": 5}
    assert src[0].case_id == metalab.ParamCase({"n": 1000, "half": 500}).case_id
    tagged = metalab.with_resolver(metalab.manual([{"n": 4}], tags=["t"]), compat_ops.to_int_resolver)
    assert tagged[0].tags == ("t", "manual_0")


def test_with_resolver_passes_context_meta_and_accepts_resolver_objects():
    src = metalab.with_resolver(metalab.grid(n=[2]), compat_ops.to_int_resolver, context_meta={"k": 1})
    assert src[0].params == {"n": 2, "half": 1, "k": 1}
    obj = metalab.with_resolver(metalab.grid(x=[1, 2]), compat_ops.ScaleResolver(10))
    assert [c.params["scaled"] for c in obj] == [10, 20]
    assert isinstance(compat_ops.ScaleResolver(1), metalab.ParamResolver)


def test_run_ids_are_made_from_the_resolved_params():
    # 1000.0 and 1000 resolve to the same params: the same run ids
    a = make(metalab.with_resolver(metalab.grid(n=[1000.0]), compat_ops.to_int_resolver))
    b = make(metalab.grid(n=[1000], half=[500]))
    assert [s.run_id for s in a.iter_specs()] == [s.run_id for s in b.iter_specs()]
    assert a.spec(1).params == {"n": 1000, "half": 500}


def test_experiment_param_resolver_wraps_the_params():
    exp = make(metalab.grid(n=[8.0]), param_resolver=compat_ops.to_int_resolver)
    assert exp.param_resolver is compat_ops.to_int_resolver
    assert isinstance(exp.params, ResolvedSource) and exp.spec(0).params == {"n": 8, "half": 4}
    same = dataclasses.replace(exp, version="2")  # never resolved twice
    assert same.spec(0).params == {"n": 8, "half": 4}
    assert same.params.source == exp.params.source
    assert exp.manifest()["params"]["resolver"] == "compat_ops:to_int_resolver"


def test_a_resolver_that_returns_no_dict_is_named():
    src = metalab.with_resolver(metalab.grid(x=[1]), compat_ops.not_a_dict)
    with pytest.raises(ValidationError, match=r"not_a_dict.*returned list"):
        src[0]


def test_an_unimportable_resolver_fails_clearly_for_remote_workers_and_manifests():
    src = metalab.with_resolver(metalab.grid(x=[1]), lambda meta, p: dict(p))
    assert src[0].params == {"x": 1}  # fine in this process
    manifest = src.to_manifest_dict()  # documents it by name...
    assert manifest["resolver"] is None and "<lambda>" in manifest["resolver_name"]
    with pytest.raises(ValidationError, match="not importable when the manifest was written"):
        source_from_manifest(manifest)  # ...but cannot rebuild it
    with pytest.raises(ValidationError, match="module-level"):
        pickle.dumps(src)  # what a SLURM submission does

    def local(meta, p):
        return p

    with pytest.raises(ValidationError, match="<locals>"):
        pickle.dumps(make(metalab.grid(x=[1]), param_resolver=local).params)


def test_resolver_from_a_manifest_that_cannot_be_imported_is_named():
    bad = {"type": "resolved", "source": metalab.grid(x=[1]).to_manifest(),
           "resolver": "no_such_module_xyz:fn"}
    with pytest.raises(ValidationError, match="no_such_module_xyz:fn"):
        source_from_manifest(bad)


def test_with_resolver_validates_its_arguments():
    with pytest.raises(ValidationError, match="param source"):
        metalab.with_resolver([{"a": 1}], compat_ops.to_int_resolver)
    with pytest.raises(ValidationError, match="resolver"):
        metalab.with_resolver(metalab.grid(a=[1]), 3)
    with pytest.raises(ValidationError, match="context_meta"):
        metalab.with_resolver(metalab.grid(a=[1]), compat_ops.to_int_resolver, context_meta=[1])


# --------------------------------------------------------------- manifests

_values = st.one_of(st.integers(-1000, 1000), st.text(max_size=5), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
_names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
_grids = st.dictionaries(_names, st.lists(_values, min_size=1, max_size=3), max_size=3).map(
    lambda axes: metalab.grid(**axes))
_manuals = st.tuples(
    st.lists(st.dictionaries(_names, _values, max_size=3), min_size=1, max_size=4),
    st.lists(_names, max_size=2),
).map(lambda ct: metalab.manual(ct[0], tags=ct[1] or None))
_randoms = st.tuples(st.integers(1, 5), st.integers(0, 10**6)).map(lambda ns: metalab.random(
    {"lr": metalab.loguniform(1e-4, 1e-1), "w": metalab.loguniform_int(2, 64),
     "d": metalab.randint(1, 4), "opt": metalab.choice(["a", "b"]), "u": metalab.uniform(0, 1),
     "k": 7}, n_trials=ns[0], seed=ns[1]))
_sources = st.one_of(_grids, _manuals, _randoms)


@settings(max_examples=60, deadline=None)
@given(source=_sources, base=st.integers(0, 2**31), replicates=st.integers(1, 3),
       resolved=st.booleans())
def test_an_experiment_manifest_round_trips(source, base, replicates, resolved):
    if resolved:
        source = metalab.with_resolver(source, compat_ops.mark_resolved)
    exp = make(source, seeds=metalab.seeds(base, replicates))
    manifest = _json(exp.manifest())
    params = deserialize_param_source(manifest["params"])
    plan = deserialize_seed_plan(manifest["seeds"])
    assert params.to_manifest_dict() == manifest["params"]
    assert plan == exp.seeds and plan.base_seed == base
    rebuilt = make(params, seeds=plan)
    assert rebuilt.manifest() == exp.manifest()
    assert [s.run_id for s in rebuilt.iter_specs()] == [s.run_id for s in exp.iter_specs()]


def test_every_source_and_the_seed_plan_has_to_manifest_dict():
    for src in (metalab.grid(a=[1]), metalab.manual([{"a": 1}]),
                metalab.random({"a": metalab.uniform(0, 1)}, 2),
                metalab.with_resolver(metalab.grid(n=[1]), compat_ops.to_int_resolver)):
        assert src.to_manifest_dict() == src.to_manifest()
        assert source_from_manifest(_json(src.to_manifest_dict())) is not None
    plan = metalab.seeds(42, 3)
    assert plan.to_manifest_dict() == {"type": "seeds", "base": 42, "replicates": 3}
    assert SeedPlan.from_manifest_dict(plan.to_manifest_dict()) == plan
    assert seed_plan_from_manifest(_json(plan.to_manifest_dict())) == plan
    # a manifest written by the original metalab reads too
    assert SeedPlan.from_manifest({"type": "SeedPlan", "base": 42, "replicates": 3}) == plan


# ------------------------------------------------------------------- seeds


def test_seed_plan_exposes_its_base_seed():
    plan = metalab.seeds(base=42, replicates=3)
    assert plan.base_seed == 42 == plan.base and plan.replicates == 3


def test_preprocessing_streams_differ_from_every_replicates_streams():
    base = 42
    pre = SeedBundle.for_preprocessing(base)
    names = ["default", "split", "init", "noise", "shuffle"]
    replicate_streams = {b.derive(n) for b in metalab.seeds(base, 200) for n in names}
    pre_streams = {pre.derive(n) for n in names}
    assert len(pre_streams) == len(names)
    assert not pre_streams & replicate_streams
    # the same base gives the same preprocessing streams; another base others
    assert SeedBundle.for_preprocessing(base).rng("split").random() == pre.rng("split").random()
    assert SeedBundle.for_preprocessing(base + 1).derive("split") != pre.derive("split")
    assert SeedBundle.from_dict(_json(pre.to_dict())) == pre
    assert pre != SeedBundle(base, 0)
    assert 0 <= pre.numpy_seed("split") < 2**32


def test_a_bundle_rejects_an_unknown_purpose():
    with pytest.raises(ValidationError, match="for_preprocessing"):
        SeedBundle(1, 0, "training")


def test_a_resolver_instance_state_reaches_the_store_only_when_its_class_describes_it(tmp_path):
    keyed = make(metalab.with_resolver(metalab.grid(x=[1]), compat_ops.KeyedResolver("sk-SECRET123")))
    metalab.run(keyed, store=tmp_path).result()  # no UnencodableValueError, no bare TypeError
    written = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert "sk-SECRET123" not in written
    manifest = keyed.params.to_manifest_dict()
    assert manifest["resolver_state"] is None
    with pytest.raises(ValidationError, match="state was not recorded"):
        source_from_manifest(_json(manifest))
    described = metalab.with_resolver(metalab.grid(x=[1, 2]), compat_ops.DescribedResolver(3))
    d = described.to_manifest_dict()
    assert d["resolver_state"] == {"factor": 3}
    back = source_from_manifest(_json(d))
    assert [c.params for c in back] == [c.params for c in described]


def test_filepath_and_dirpath_take_the_original_hash_path_keyword(tmp_path):
    from metalab.definition._context import context_fingerprint

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "data.csv").write_text("x\n1\n")
        os.utime(tmp_path / sub / "data.csv", ns=(1, 1))
    plain = [context_fingerprint({"d": metalab.FilePath(tmp_path / s / "data.csv")}) for s in "ab"]
    assert plain[0] == plain[1]  # default: moving the data keeps the context
    pathed = [context_fingerprint({"d": metalab.FilePath(tmp_path / s / "data.csv", hash_path=True)})
              for s in "ab"]
    assert pathed[0] != pathed[1] and plain[0] not in pathed
    dirs = [context_fingerprint({"d": metalab.DirPath(tmp_path / s, "*.csv", hash_path=True)})
            for s in "ab"]
    assert dirs[0] != dirs[1]
    marker = metalab.DirPath(tmp_path / "a", "*.csv", hash_path=True)
    assert pickle.loads(pickle.dumps(marker)) == marker and "hash_path=True" in repr(marker)
    assert metalab.FilePath(tmp_path / "a" / "data.csv", hash_path=False) == metalab.FilePath(
        tmp_path / "a" / "data.csv")
