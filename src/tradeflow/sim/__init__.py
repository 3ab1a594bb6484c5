"""The one cost and fill model and the portfolio simulator shared by the RL env and the backtester."""

from tradeflow.sim.costs import CostModel
from tradeflow.sim.market import MarketArrays, PanelMarket
from tradeflow.sim.portfolio import (
    Fill,
    PortfolioResult,
    SimResult,
    rebalance,
    rebalance_session,
    simulate_portfolio,
    simulate_targets,
)
from tradeflow.sim.sizing import RESEARCH, Sized, SizingRules, size_order

__all__ = [
    "RESEARCH",
    "CostModel",
    "Fill",
    "MarketArrays",
    "PanelMarket",
    "PortfolioResult",
    "SimResult",
    "Sized",
    "SizingRules",
    "rebalance",
    "rebalance_session",
    "simulate_portfolio",
    "simulate_targets",
    "size_order",
]
