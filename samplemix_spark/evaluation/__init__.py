"""Proxy evaluation: judge a mixture by the model it trains.

``holdout`` turns the held-out table (split off at ingest) into per-domain
evaluation bytes and a fingerprint; ``stream`` reads a run's output files in a
hashed order; ``proxy`` is the byte-level transformer and its trainer;
``swarm`` runs many proxies locally or as Spark tasks; ``evaluate`` ties them
into ``samplemix evaluate`` and the ``proxy_eval`` table.
"""
