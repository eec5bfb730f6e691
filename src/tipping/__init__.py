"""tipping: a reproducible testbed for the Alignment Tipping Process (arXiv 2510.04860)."""

__version__ = "0.1.0"
