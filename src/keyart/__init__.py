"""keyart: choose, per member and title, the artwork most likely to lead to a quality play."""

__version__ = "0.1.0"
