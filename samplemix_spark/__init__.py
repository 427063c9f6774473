"""samplemix-spark: SampleMix sample-wise data mixing as Spark batch jobs."""

__version__ = "0.1.0"
