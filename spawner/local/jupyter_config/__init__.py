"""Jupyter configuration shipped with the local runtime (put on JUPYTER_CONFIG_PATH)."""
