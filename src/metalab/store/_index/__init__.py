"""The query indexes of the stores: rebuildable copies of the run files, in SQL.

A store is "files + one index"; both indexes answer the language of
:mod:`metalab.query` with the same results as its in-memory engine, and
each store calls its index through the one interface :class:`._interface.Index`
(refresh, select, count, table, rebuild; None where the files must answer).

* :mod:`._catalog` (with :mod:`._sqlite`, the compiler, and
  :mod:`._filestore`, the FileStore side: ``CatalogIndex``): the FileStore's embedded SQLite
  catalog of one experiment folder (``.catalog/catalog.sqlite``).
* :mod:`._postgres` (with :mod:`._pgsql`, the compiler, and
  :mod:`._pgquery`, the PostgresStore side: ``PostgresQueries``): the PostgreSQL tables of a
  PostgresStore.
"""

from metalab.store._index._catalog import Catalog, CatalogUnavailable

__all__ = ["Catalog", "CatalogUnavailable"]
