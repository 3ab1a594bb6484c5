"""The research pipeline `train-spy`: ingest -> gate -> features -> walk-forward -> promotion."""
