"""Market data: sources, the normalized bar frame, the snapshot store and the quality gate."""
