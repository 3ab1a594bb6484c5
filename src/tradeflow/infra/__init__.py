"""The bottom layer: plumbing every store shares (SQLite, atomic files, canonical JSON).

Nothing here imports the rest of tradeflow (an import-linter contract holds it to that), so any
module may use it without creating a cycle. Callers pass in their own error type.
"""
