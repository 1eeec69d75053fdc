"""camtl: Conditionally Adaptive Multi-Task Learning (Pilault et al., ICLR 2021) for GLUE."""

__version__ = "0.1.0"
