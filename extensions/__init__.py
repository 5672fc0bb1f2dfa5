"""Single-user side of GemHub (server extension and JupyterLab UI)."""
