"""The ``kijko`` command line."""
