"""The Hydra configs of ``fast-style train``, ``optimize`` and ``compare``: package data, found as
``pkg://fast_style.configs`` wherever the package is installed."""
