"""The offline default: real daily history bundled in the `arch` package (data only)."""
