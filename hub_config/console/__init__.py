"""GemHub's admin console: ``/hub/gemhub/admin``, in the hub's own pages, for hub admins.

One page with tabs. The tabs that ship here: **Workspaces** (every workspace with its
members, running servers and usage; open one to change its limits or stop its servers),
**Users** (every hub user with their workspaces, running servers and lock state) and
**Devices** (the accelerator inventory with maintenance). Every list has search and paging.

The extension point: console tabs
---------------------------------
Every tab, these included, is a :class:`~gemhub.hub_config.console.tabs.ConsoleTab`
registered under the Python entry-point group ``gemhub.console_tabs``. A later service
(quotas, billing, jobs, images) adds its tab by shipping a subclass and one line in
``pyproject.toml``::

    [project.entry-points."gemhub.console_tabs"]
    billing = "gemhub.services.billing.console:BillingTab"

and nothing in the console changes. A tab

- has a ``name`` (its URL: ``/hub/gemhub/admin/<name>[/<path>]``), a ``title``, an ``order``
  (tabs are shown by order, then name) and whether the search box applies (``searchable``);
- answers GET with :meth:`ConsoleTab.view` (its template's variables) rendered into its
  own ``template`` from its own ``templates_dir`` (the console's ``console-macros.html``,
  with the pager and the server table, can be imported there too);
- answers form POSTs with :meth:`ConsoleTab.act` (an ``action`` field names what to do;
  it returns the notice shown after the redirect, or raises ConsoleError with a 4xx);
- gets everything through the :class:`~gemhub.hub_config.console.tabs.ConsoleContext`:
  the admin's name, the search/paging query, the hub's users and servers
  (:class:`~gemhub.hub_config.console.directory.HubDirectory`: it can stop a server),
  each hub service's internal URL and token (``ctx.service("quota")``: call the service's
  REST API acting for the admin with ``?user=``, the way the spawner acts for users; the
  service decides, by asking the hub, that the caller is an admin), the accelerator labels
  and, on the local runtime, the device inventory.

A tab owns no data: it reads its service's API (each service owns its tables) and the
hub's own records. A tab that fails to import is logged and left out; the others work.
"""

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form, Query, load_tabs

__all__ = ["ConsoleContext", "ConsoleError", "ConsoleTab", "Form", "Query", "load_tabs"]
