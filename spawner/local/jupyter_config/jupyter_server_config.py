# GemHub's single-user server settings (loaded by jupyter-server from JUPYTER_CONFIG_PATH;
# a Python file because one setting depends on the server's URL, and jupyter-server reads
# only jpserver_extensions from jupyter_server_config.d/). Why each one: benchmarks/README.md.
import os

# jupyterlab_server marks lab/extensions/<ext>/static/ immutable only without a base URL
# (its patterns lack the prefix), so under /user/<name>/ every load revalidated each
# extension file. Everything fetched under lab/extensions/ is content-hashed
# (remoteEntry.<hash>.js, <chunk>.<hash>.js); the unhashed style.js is never fetched by URL.
_prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
c.ServerApp.static_immutable_cache = [_prefix.rstrip("/") + "/lab/extensions/"]  # noqa: F821 (c is given by traitlets)

# gzip text responses (JavaScript, CSS, JSON, HTML): a cold load moves ~5 MB of JavaScript.
# A plain dict, merged with what an earlier file set: jupyterhub-singleuser looks inside it.
_settings = c.ServerApp.tornado_settings if "tornado_settings" in c.ServerApp else {}  # noqa: F821
c.ServerApp.tornado_settings = {**_settings, "compress_response": True}  # noqa: F821

# jupyter-lsp looks for node-based language servers in these folders; left to itself it
# asks `npm prefix -g` at every server start, a node process costing more CPU than the
# rest of its start-up (a burst of thirty new users pays it thirty times). Its folders
# written out, the global prefixes npm uses (Debian's /usr, npm's own /usr/local) in place
# of asking, and JupyterLab's build staging folder left out (no language server lives there).
import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

c.LanguageServerManager.node_roots = [  # noqa: F821
    str(_Path.cwd()), str(_Path(_sys.prefix) / "lib"), _sys.prefix, "/usr/local/lib", "/usr/local", "/usr/lib", "/usr"]
