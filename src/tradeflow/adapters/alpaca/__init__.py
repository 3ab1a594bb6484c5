"""Alpaca through alpaca-py: daily bars (data), paper and live trading (execution), the pure
translation tables of the trading API (parsing), and the SDK set-up and keys both share (client)."""
