"""Map the repository's top-level folders onto the ``gemhub`` namespace.

The layout is fixed (hub_config/, spawner/, services/, extensions/, cli/), but imports
live under one namespace, so every folder is installed as ``gemhub.<name>``.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "hub_config": "gemhub.hub_config",
    "spawner": "gemhub.spawner",
    "services": "gemhub.services",
    "extensions": "gemhub.lab",
    "cli": "gemhub.cli",
}

packages = []
package_dir = {}
for folder, name in FOLDERS.items():
    package_dir[name] = folder
    packages.append(name)
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    include_package_data=True,
    package_data={"": ["*.yaml", "*.html", "*.ini", "*.mako", "*.json", "*.css", "*.js", "templates/*",
                       "templates/*/*", "static/*", "jupyter_server_config.d/*.json", "icons/*.svg"]},
)
