"""JupyterLab default setting overrides (a package only so the JSON ships in wheels)."""
