"""The package's version, in one place (the front door and the command line read it)."""

__version__ = "0.1.0"
