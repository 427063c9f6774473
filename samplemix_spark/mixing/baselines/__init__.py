"""Top-down baselines (SPEC §5): a weight per domain, uniform sampling inside each domain.

``sampler`` turns domain weights into per-document expected counts with the same
floor + hashed Bernoulli rule and the same tables as SampleMix; ``sources`` gives
the weights (natural, manual, entropy, BiMix, quality threshold); ``entropy`` and
``bimix`` hold the two training-free and law-fitted methods.
"""
