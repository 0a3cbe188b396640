"""Test helpers shipped for store backend authors (needs pytest)."""

from metalab.testing._store_contract import (
    CONTRACT_EXPERIMENT,
    FileRaw,
    RawAccess,
    StoreContractTests,
    make_record,
)

__all__ = ["CONTRACT_EXPERIMENT", "FileRaw", "RawAccess", "StoreContractTests", "make_record"]
