"""kopf operator that turns PortfolioAnalysis resources into Dask runs."""
