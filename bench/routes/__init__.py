"""Competitor routes for ``python -m bench``: each module defines ``run(ctx) -> list[RouteResult]``."""
