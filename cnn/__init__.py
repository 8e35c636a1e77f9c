"""pixgraph cnn package."""

__all__: list[str] = []
