"""Yahoo Finance through yfinance (data only; Yahoo is not a broker)."""
