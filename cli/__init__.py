"""The ``gemhub`` command line client."""
