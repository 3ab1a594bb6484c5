"""Brokers behind one protocol: sim (local paper, the default), alpaca and ib adapters, and the
FakeBroker with fault modes for tests. Only bootstrap code picks an adapter."""
