"""The one place the version is written: the package, setup.cfg and exported models read it."""

__version__ = "0.1.0"
