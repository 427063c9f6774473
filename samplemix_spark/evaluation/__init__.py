"""Proxy evaluation: judge a mixture by the model it trains.

``holdout`` turns the held-out table (split off at ingest) into the documents a
proxy is scored on, read where the proxy trains; ``stream`` reads a run's output
files in a hashed order; ``proxy`` trains the byte-level model
(``models.byte_lm``) and scores every held-out document; ``swarm`` runs many
proxies locally or as Spark tasks; ``intervals`` turns per-document bits into
intervals and paired verdicts; ``evaluate`` ties them into ``samplemix evaluate``
and the ``proxy_eval`` tables; ``tune`` and ``bimix_swarm`` search settings and
domain proportions with the same proxies; ``mix_stage`` runs BiMix's swarm before
the mix that reads it.
"""
