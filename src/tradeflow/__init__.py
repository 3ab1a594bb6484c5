"""tradeflow: gated market data, strategies, walk-forward validation and NYSE-hours trading."""

__version__ = "0.1.0"
