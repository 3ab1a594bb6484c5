"""CSV and Parquet files on disk (data only)."""
