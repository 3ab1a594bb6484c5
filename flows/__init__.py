"""Prefect flows: thin sequences of tasks (see tasks/); all logic lives in src/tradeflow."""
