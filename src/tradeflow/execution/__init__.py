"""The Broker protocol, and the brokers that are not venues: sim (local paper, the default) and the
FakeBroker with fault modes for tests. The Alpaca and IB brokers live in tradeflow.adapters; only
bootstrap code picks a broker."""
