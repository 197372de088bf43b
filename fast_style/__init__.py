"""fast_style: feed-forward and optimization-based neural style transfer."""

__version__ = "0.1.0"

__all__ = ["__version__"]
