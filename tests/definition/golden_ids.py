"""Golden canonical bytes, fingerprints and run ids: one row per type the encoding accepts.

Run ids must never change: a store written today has to resume and dedupe with
every later version of metalab.  Each row pins the canonical bytes of a value
(``canonical_bytes``), its ``fingerprint`` and the run id of the run whose params
are ``{"v": value}`` in the experiment ``golden:1`` (empty context, seed plan
``seeds(0)``).  ``test_def_golden.py`` recomputes every row in this process and
in subprocesses under other hash seeds, with and without numpy imported.

Changing a row is a breaking change (every stored run with such a value would
be rerun under a new id): it must be deliberate and announced.  When the
encoding gains a type, add rows here (``python tests/definition/golden_ids.py``
prints the computed rows of :data:`VALUES`/:data:`NUMPY_VALUES`; review the
bytes by hand against the encoding rules in ``definition/_canonical.py``) and a
run to the committed store in ``tests/fixtures``.

The classes below are part of the table: their qualified names are encoded.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Shape(enum.Enum):
    SQUARE = (4, "sides")


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Box:
    corner: Point
    items: list[Any]
    meta: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str


@dataclasses.dataclass(frozen=True)
class Pair:
    """Fields not in alphabetical order: the encoded object sorts them."""

    b: int
    a: int


class Custom:
    """An object with the ``__metalab_canonical__`` hook (as FilePath/DirPath have)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def __metalab_canonical__(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}


def _np() -> Any:
    return importlib.import_module("numpy")


# (label, make): ``make`` builds the value afresh (sets are rebuilt in each process).
VALUES: list[tuple[str, Callable[[], Any]]] = [
    ("None", lambda: None),
    ("True", lambda: True),
    ("False", lambda: False),
    ("int 0", lambda: 0),
    ("int -1", lambda: -1),
    ("int 2**63", lambda: 2**63),
    ("int -2**63-1", lambda: -(2**63) - 1),
    ("int 10**30", lambda: 10**30),
    ("float 0.0", lambda: 0.0),
    ("float -0.0", lambda: -0.0),
    ("float 1.0", lambda: 1.0),
    ("float 0.1", lambda: 0.1),
    ("float -1.5", lambda: -1.5),
    ("float 1e16", lambda: 1e16),
    ("float 1e-7", lambda: 1e-7),
    ("float 1e300", lambda: 1e300),
    ("float min normal", lambda: 2.2250738585072014e-308),
    ("float subnormal", lambda: 5e-324),
    ("float max", lambda: 1.7976931348623157e308),
    ("str empty", lambda: ""),
    ("str ascii", lambda: "abc"),
    ("str 1", lambda: "1"),
    ("str 1.0", lambda: "1.0"),
    ("str latin", lambda: "\u00e9t\u00e9"),
    ("str cjk", lambda: "\u65e5\u672c"),
    ("str astral", lambda: "\U0001f600"),
    ("str escapes", lambda: "a\n\t\"\\/\x00\x7f"),
    ("bytes empty", lambda: b""),
    ("bytes", lambda: b"\x00\xffAb"),
    ("bytearray", lambda: bytearray(b"Ab")),
    ("list", lambda: [1, "a", None]),
    ("tuple", lambda: (1, "a", None)),
    ("list empty", lambda: []),
    ("list nested", lambda: [[], [[]], ()]),
    ("set empty", lambda: set()),
    ("set ints", lambda: {3, 1, 2, -10}),
    ("set ints in string order", lambda: {9, 10, 100}),
    ("set strings", lambda: {"pear", "apple", "fig", "b", "B", "\u00e9"}),
    ("set mixed", lambda: {1, "1", None, 2.5, b"1", (1, 2), False}),
    ("set of lists", lambda: {(1, 2), (10,), ("1",)}),
    ("set of dataclasses", lambda: {Pair(b=1, a=2), Pair(b=2, a=1)}),
    ("frozenset", lambda: frozenset({"y", "x"})),
    ("dict empty", lambda: {}),
    ("dict str keys", lambda: {"b": 1, "a": 2, "B": 3, "\u00e9": 4}),
    ("dict $ keys", lambda: {"$f": "0.5", "$$m": 1, "a$": 2}),
    ("dict non-str keys", lambda: {1: "int", "1": "str", 1.5: "float", None: "none"}),
    ("dict int keys in string order", lambda: {9: "nine", 10: "ten"}),
    ("dict bool and tuple keys", lambda: {True: 1, (1, 2): "t", b"k": "b"}),
    ("dict dataclass keys", lambda: {Pair(b=1, a=2): "x", Pair(b=2, a=1): "y"}),
    ("dict enum keys", lambda: {Color.GREEN: 1, Color.RED: 2}),
    ("nested", lambda: {"a": [{"b": {2, 1}}, (3.0, "x")], "c": {"d": {1: [b"z"]}}}),
    ("enum RED", lambda: Color.RED),
    ("enum GREEN", lambda: Color.GREEN),
    ("enum BLUE", lambda: Color.BLUE),
    ("enum str value", lambda: Mode.FAST),
    ("enum other str value", lambda: Mode.SLOW),
    ("IntEnum", lambda: Level.HIGH),
    ("enum tuple value", lambda: Shape.SQUARE),
    ("dataclass", lambda: Point(1, 2.0)),
    ("dataclass nested", lambda: Box(Point(0, -0.5), ["a", Mode.FAST], {"k": None})),
    ("dataclass frozen", lambda: Frozen("x")),
    ("PurePosixPath", lambda: PurePosixPath("data/train.csv")),
    ("PureWindowsPath", lambda: PureWindowsPath("C:\\data\\train.csv")),
    ("PurePosixPath absolute", lambda: PurePosixPath("/abs/\u00e9.txt")),
    ("canonical hook", lambda: Custom("x", 2)),
]

NUMPY_VALUES: list[tuple[str, Callable[[], Any]]] = [
    ("numpy float64", lambda: _np().float64(0.5)),
    ("numpy float32", lambda: _np().float32(0.1)),
    ("numpy int64", lambda: _np().int64(-3)),
    ("numpy uint64 max", lambda: _np().uint64(2**64 - 1)),
    ("numpy bool", lambda: _np().bool_(True)),
    ("numpy str", lambda: _np().str_("s")),
    ("numpy 1-d int array", lambda: _np().arange(3)),
    ("numpy 2-d float array", lambda: _np().array([[1.5, -0.0], [2.0, 3.25]])),
    ("numpy bool array", lambda: _np().array([True, False])),
    ("numpy empty array", lambda: _np().zeros((0,))),
    ("numpy 0-d array", lambda: _np().array(7)),
    ("numpy in a dict", lambda: {"lr": _np().float64(0.01), "n": _np().int32(4)}),
]


def run_id_of(value: Any) -> str:
    """Run id of the run with params ``{"v": value}`` in experiment ``golden:1``."""
    from metalab.definition import Experiment, manual, seeds

    exp = Experiment(name="golden", version="1", context={}, operation=_noop,
                     params=manual([{"v": value}]), seeds=seeds(0))
    return exp.spec(0).run_id


def _noop(params: Any) -> None:
    return None


def compute(make: Callable[[], Any]) -> tuple[bytes, str, str]:
    """(canonical bytes, fingerprint, run id) of the value ``make()`` builds."""
    from metalab.definition import canonical_bytes, fingerprint

    value = make()
    return canonical_bytes(value), fingerprint(value), run_id_of(value)


def compute_all(with_numpy: bool) -> dict[str, tuple[bytes, str, str]]:
    rows = VALUES + (NUMPY_VALUES if with_numpy else [])
    return {label: compute(make) for label, make in rows}


# label -> (canonical bytes, fingerprint, run id)
GOLDEN: dict[str, tuple[bytes, str, str]] = {
    'None': (
        b'null',
        '74234e98afe7498f', '8cf25c3b45a41723',
    ),
    'True': (
        b'true',
        'b5bea41b6c623f7c', '579a546ac79ad208',
    ),
    'False': (
        b'false',
        'fcbcf165908dd18a', 'f4154789fd2ae3d4',
    ),
    'int 0': (
        b'0',
        '5feceb66ffc86f38', 'f78afa3c2afcab83',
    ),
    'int -1': (
        b'-1',
        '1bad6b8cf97131fc', '91dd28582ce2ef0a',
    ),
    'int 2**63': (
        b'9223372036854775808',
        'c5c29af0c2b1ba23', '6b44aff700c729ee',
    ),
    'int -2**63-1': (
        b'-9223372036854775809',
        'a11b7b6918ba4e84', 'f0b0a0141a8d9535',
    ),
    'int 10**30': (
        b'1000000000000000000000000000000',
        'fa72d4146f76703a', 'd105595f6bbbf908',
    ),
    'float 0.0': (
        b'{"$f":"0.0"}',
        'a124d603abe76dea', '4c9d7cfa93b610c3',
    ),
    'float -0.0': (
        b'{"$f":"-0.0"}',
        '6e5ecc52fe837f84', '8ca11e5aa2d949da',
    ),
    'float 1.0': (
        b'{"$f":"1.0"}',
        'bf8b1fab31c5b0ca', 'ee6df3aa2b771faa',
    ),
    'float 0.1': (
        b'{"$f":"0.1"}',
        'f93d9c8b172c111c', 'fc0289ae00d3cac7',
    ),
    'float -1.5': (
        b'{"$f":"-1.5"}',
        '31d0e228f30bfa68', '15f19651ff71c3d2',
    ),
    'float 1e16': (
        b'{"$f":"1e+16"}',
        'a212a6cb40cc4551', 'fedb828ef615e20e',
    ),
    'float 1e-7': (
        b'{"$f":"1e-07"}',
        'e28cc94ccd9e2538', 'fb834f2f805d6f4a',
    ),
    'float 1e300': (
        b'{"$f":"1e+300"}',
        'dcfa317adda6b113', 'a6277db6fec76c12',
    ),
    'float min normal': (
        b'{"$f":"2.2250738585072014e-308"}',
        '2c76ec6037350de8', '7c314fbb2d768546',
    ),
    'float subnormal': (
        b'{"$f":"5e-324"}',
        '2bf4fdd7d4b872e5', '1ee87281959e8029',
    ),
    'float max': (
        b'{"$f":"1.7976931348623157e+308"}',
        '79efdf8cf64e4ef1', '3315ea5cf1dd658b',
    ),
    'str empty': (
        b'""',
        '12ae32cb1ec02d01', '47864ce01b1cf548',
    ),
    'str ascii': (
        b'"abc"',
        '6cc43f858fbb7633', '98327965574120e4',
    ),
    'str 1': (
        b'"1"',
        '391552c099c101b1', '03200e06bfa3660b',
    ),
    'str 1.0': (
        b'"1.0"',
        'a51162aeeb057ca4', '2095979f5b8d6dc8',
    ),
    'str latin': (
        b'"\\u00e9t\\u00e9"',
        '95c60f321daf813a', '9587af3328416521',
    ),
    'str cjk': (
        b'"\\u65e5\\u672c"',
        '11447b8ff8696f09', 'f0eac768a26d2f5b',
    ),
    'str astral': (
        b'"\\ud83d\\ude00"',
        'e30439cb87e140c0', '7b8352a01ab49bad',
    ),
    'str escapes': (
        b'"a\\n\\t\\"\\\\/\\u0000\\u007f"',
        'f84ffa9b7f922952', '2217c3ea10bf3fb8',
    ),
    'bytes empty': (
        b'{"$b":""}',
        'b41de5f2f3fe8a00', '565363c771065728',
    ),
    'bytes': (
        b'{"$b":"00ff4162"}',
        'f2ccb34e8b62bfd1', '41977c65788dee43',
    ),
    'bytearray': (
        b'{"$b":"4162"}',
        '691a0750e2232b5b', '32f9543dd821ff55',
    ),
    'list': (
        b'[1,"a",null]',
        '6f9c54658fdbc2f1', 'cd6026c334575da9',
    ),
    'tuple': (
        b'[1,"a",null]',
        '6f9c54658fdbc2f1', 'cd6026c334575da9',
    ),
    'list empty': (
        b'[]',
        '4f53cda18c2baa0c', '59087f3620e336a1',
    ),
    'list nested': (
        b'[[],[[]],[]]',
        'd9e684564bd9512a', 'd709b4a1b3fab702',
    ),
    'set empty': (
        b'{"$s":[]}',
        'ad904e9585308b96', 'd82ecf94f53f21f7',
    ),
    'set ints': (
        b'{"$s":[-10,1,2,3]}',
        'fe3c4e6cba95c05d', '5fc171dc8224f891',
    ),
    'set ints in string order': (
        b'{"$s":[10,100,9]}',
        'ed2da3183cfa2e3e', 'a07be981fda462fe',
    ),
    'set strings': (
        b'{"$s":["B","\\u00e9","apple","b","fig","pear"]}',
        'd3bd8f18e7ef2f06', '03d9a915dfff369f',
    ),
    'set mixed': (
        b'{"$s":["1",1,[1,2],false,null,{"$b":"31"},{"$f":"2.5"}]}',
        '69a53ef80eb21107', 'f9a5f2f152782d68',
    ),
    'set of lists': (
        b'{"$s":[["1"],[1,2],[10]]}',
        'c03e5ef8e6fdeb76', 'a0328f42975ff98b',
    ),
    'set of dataclasses': (
        b'{"$s":[{"$dc":["Pair",{"a":1,"b":2}]},{"$dc":["Pair",{"a":2,"b":1}]}]}',
        '1afdd8dc82a8075f', '2bdf514b5e554bfc',
    ),
    'frozenset': (
        b'{"$s":["x","y"]}',
        '1e8419bcc57d22a1', 'a20a88ceafbdf681',
    ),
    'dict empty': (
        b'{}',
        '44136fa355b3678a', '606c467cc5960fcf',
    ),
    'dict str keys': (
        b'{"B":3,"a":2,"b":1,"\\u00e9":4}',
        '878f9d17d66d7ace', '65d6bb01b70dd5db',
    ),
    'dict $ keys': (
        b'{"$$$m":1,"$$f":"0.5","a$":2}',
        '60304f752a8103c3', '1a2e2b27a16bf1a0',
    ),
    'dict non-str keys': (
        b'{"$m":[["1","str"],[1,"int"],[null,"none"],[{"$f":"1.5"},"float"]]}',
        'c363d38b3fe9cfbc', '5affecea3dd7b400',
    ),
    'dict int keys in string order': (
        b'{"$m":[[10,"ten"],[9,"nine"]]}',
        'f8fdbf1a44dd308c', '7aa36705efb45319',
    ),
    'dict bool and tuple keys': (
        b'{"$m":[[[1,2],"t"],[true,1],[{"$b":"6b"},"b"]]}',
        '2a13ab0a5e3baf61', 'c50710037d5cb890',
    ),
    'dict dataclass keys': (
        b'{"$m":[[{"$dc":["Pair",{"a":1,"b":2}]},"y"],[{"$dc":["Pair",{"a":2,"b":1}]},"x"]]}',
        '7477c75d3b25bf9d', 'ae4f653f5fab7cb7',
    ),
    'dict enum keys': (
        b'{"$m":[[{"$e":["Color",1]},2],[{"$e":["Color",2]},1]]}',
        '5d1b8e4d5b2371ed', '7088de25ee8bfe4c',
    ),
    'nested': (
        b'{"a":[{"b":{"$s":[1,2]}},[{"$f":"3.0"},"x"]],"c":{"d":{"$m":[[1,[{"$b":"7a"}]]]}}}',
        '5adafee56e66cb88', '0a68058b88849432',
    ),
    'enum RED': (
        b'{"$e":["Color",1]}',
        'faeb510f737a2c33', 'f975ef0bec792618',
    ),
    'enum GREEN': (
        b'{"$e":["Color",2]}',
        'e506fb14c6a9cdef', '957b3bde0500160a',
    ),
    'enum BLUE': (
        b'{"$e":["Color",3]}',
        '2a101b47ff91398b', 'ed328539abfd37be',
    ),
    'enum str value': (
        b'{"$e":["Mode","fast"]}',
        '5c7758d817f1fb5a', '1b269ea728c39ecd',
    ),
    'enum other str value': (
        b'{"$e":["Mode","slow"]}',
        'c728daf7e22b8a83', 'f7cae6f5978b380e',
    ),
    'IntEnum': (
        b'{"$e":["Level",2]}',
        '294974fc2cdd81c0', 'c12d01bcdf7f5a65',
    ),
    'enum tuple value': (
        b'{"$e":["Shape",[4,"sides"]]}',
        'd297abfa642f0532', '86308eacd66915c1',
    ),
    'dataclass': (
        b'{"$dc":["Point",{"x":1,"y":{"$f":"2.0"}}]}',
        'accd9ebcc37d2024', 'e2ae6a40880b4bb9',
    ),
    'dataclass nested': (
        b'{"$dc":["Box",{"corner":{"$dc":["Point",{"x":0,"y":{"$f":"-0.5"}}]},"items":["a",{"$e":["Mode","fast"]}],"meta":{"k":null}}]}',
        '1f49e7ca85300060', 'ac4c22163e7425fb',
    ),
    'dataclass frozen': (
        b'{"$dc":["Frozen",{"name":"x"}]}',
        'f56fc71a5283a698', '735e6648b0b2cb0b',
    ),
    'PurePosixPath': (
        b'{"$p":"data/train.csv"}',
        '9de13e0c292f8064', '55dd21eadbcb80be',
    ),
    'PureWindowsPath': (
        b'{"$p":"C:/data/train.csv"}',
        'c75098330d923510', '963b7eae1213465c',
    ),
    'PurePosixPath absolute': (
        b'{"$p":"/abs/\\u00e9.txt"}',
        '25f0bcb7cd50117b', 'c2c9acd1b0e7fc1d',
    ),
    'canonical hook': (
        b'{"$o":["Custom",{"name":"x","size":2}]}',
        '8d03f03ec4915c76', '08105ae5f950059d',
    ),
    'numpy float64': (
        b'{"$f":"0.5"}',
        '75ad9a6971146a3d', 'c673bfb0586f68c8',
    ),
    'numpy float32': (
        b'{"$f":"0.10000000149011612"}',
        '27dc1b3376f740c2', 'b7ae0a82811aa878',
    ),
    'numpy int64': (
        b'-3',
        '615bdd17c2556f82', '8fabe6a144b02bba',
    ),
    'numpy uint64 max': (
        b'18446744073709551615',
        '2cdb26265b4dc65e', 'ef2577a92df500b0',
    ),
    'numpy bool': (
        b'true',
        'b5bea41b6c623f7c', '579a546ac79ad208',
    ),
    'numpy str': (
        b'"s"',
        '0f4657778ae14ff7', '38d8a5f751b44181',
    ),
    'numpy 1-d int array': (
        b'[0,1,2]',
        '434026bd98ff2d8a', '0b0a3e26aee8d65d',
    ),
    'numpy 2-d float array': (
        b'[[{"$f":"1.5"},{"$f":"-0.0"}],[{"$f":"2.0"},{"$f":"3.25"}]]',
        '7885647158c28d81', '34cc5f418d737332',
    ),
    'numpy bool array': (
        b'[true,false]',
        '153c9dbcc7025ecd', '3fcde348595579db',
    ),
    'numpy empty array': (
        b'[]',
        '4f53cda18c2baa0c', '59087f3620e336a1',
    ),
    'numpy 0-d array': (
        b'7',
        '7902699be42c8a8e', '1569684a20f4ae60',
    ),
    'numpy in a dict': (
        b'{"lr":{"$f":"0.01"},"n":4}',
        '03d2c47582afc7ad', 'c8edc22366e9974c',
    ),
}


def main() -> None:
    """Print the computed rows (for reviewing a new row before adding it to GOLDEN)."""
    for label, (data, fp, rid) in compute_all(with_numpy=True).items():
        mark = "" if GOLDEN.get(label) == (data, fp, rid) else "   # differs from GOLDEN"
        print(f"    {label!r}: (\n        {data!r},\n        {fp!r}, {rid!r},\n    ),{mark}")


if __name__ == "__main__":
    main()
