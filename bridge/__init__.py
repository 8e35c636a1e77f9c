"""pixgraph bridge package."""

__all__: list[str] = []
