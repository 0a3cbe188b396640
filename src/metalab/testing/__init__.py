"""Test helpers shipped for store and executor authors (needs pytest)."""

from metalab.testing._executor_contract import ExecutorContractTests, contract_op
from metalab.testing._store_contract import (
    CONTRACT_EXPERIMENT,
    FileRaw,
    RawAccess,
    StoreContractTests,
    make_record,
)

__all__ = [
    "CONTRACT_EXPERIMENT",
    "ExecutorContractTests",
    "FileRaw",
    "RawAccess",
    "StoreContractTests",
    "contract_op",
    "make_record",
]
