"""Venue adapters: one package per venue (alpaca, ib, yahoo, files, sample) holding its data source,
its broker and the pure tables that translate the venue's answers into the domain.

Each venue sets up its SDK once, and nothing outside this package imports a vendor SDK
(import-linter and tests/test_architecture.py check both). The rest of the library reaches an
adapter only through the BarSource and Broker protocols, picked by tradeflow.data.sources.make_source
and tradeflow.bootstrap, which import the adapters lazily so an SDK loads only when it is used.
"""
