"""civicbot: the tools of civic life for Matrix neighbourhood rooms."""

__version__ = "0.1.0"
