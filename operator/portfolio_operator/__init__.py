"""kopf operator that turns PortfolioAnalysis resources into Dask runs.

Its dependencies (kopf, kubernetes, dask-kubernetes, prometheus-client) are the distribution's
``operator`` extra: ``pip install 'portfolio-operator[operator]'``.
"""
