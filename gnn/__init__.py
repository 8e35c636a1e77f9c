"""pixgraph gnn package."""

__all__: list[str] = []
