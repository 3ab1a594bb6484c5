"""The one cost and fill model and the portfolio simulator shared by the RL env and the backtester."""

from tradeflow.sim.costs import CostModel
from tradeflow.sim.market import MarketArrays
from tradeflow.sim.portfolio import Fill, SimResult, rebalance, simulate_targets

__all__ = ["CostModel", "Fill", "MarketArrays", "SimResult", "rebalance", "simulate_targets"]
