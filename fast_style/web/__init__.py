"""``fast-style serve``: a local web page and HTTP API over the inference files (the ``web`` extra).

``fast_style.web.app.create_app`` builds the ASGI app; ``fast_style.web.server`` runs it under
uvicorn. Nothing here imports training code: only ``fast_style.inference`` and ``fast_style.images``.
"""

__all__: list[str] = []
