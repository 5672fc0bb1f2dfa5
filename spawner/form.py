"""The spawn page's options form and the parsing of its submission (pure).

Element names are stable (tests and the browser flows use them):
``select name="workspace_id"``, ``select name="project_id"`` (option values are ids: the
form never sends names, see gemhub.spawner.request), ``input type="radio" name="preset"``,
``input type="text" name="accelerator"`` (custom accelerator spec, when allowed).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable, Mapping

from gemhub.services.common.params import as_id, echo
from gemhub.spawner.presets import Catalog, format_memory
from gemhub.spawner.request import RequestError

MANAGE_URL = "services/quota/"

_SCRIPT = """
<script>
(function () {
  var ws = document.getElementById("gemhub-workspace");
  var pr = document.getElementById("gemhub-project");
  if (!ws || !pr) { return; }
  function filter() {
    var first = null, keep = false;
    for (var i = 0; i < pr.options.length; i++) {
      var o = pr.options[i];
      var show = o.getAttribute("data-workspace") === ws.value;
      o.hidden = !show; o.disabled = !show;
      if (show && first === null) { first = o; }
      if (show && o.selected) { keep = true; }
    }
    if (!keep && first !== null) { first.selected = true; }
  }
  ws.addEventListener("change", filter);
  filter();
})();
</script>
"""


def _projects(ws: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(ws.get("projects") or [])


def _default_project(projects: list[Mapping[str, Any]], wanted: Mapping[str, Any]) -> str:
    """Id of the project to preselect: the previous one, else "default", else the first."""
    for p in projects:
        if wanted.get("project_id") is not None and str(p.get("id")) == str(wanted["project_id"]):
            return str(p.get("id"))
    for p in projects:
        if p.get("name") == "default":
            return str(p.get("id"))
    return str(projects[0].get("id")) if projects else ""


def _selected_workspace(workspaces: list[Mapping[str, Any]], previous: Mapping[str, Any]) -> str:
    """Id of the workspace to preselect: the previous one, else the personal one."""
    for w in workspaces:
        if previous.get("workspace_id") is not None and str(w.get("id")) == str(previous["workspace_id"]):
            return str(w.get("id"))
    personal = [w for w in workspaces if w.get("personal")]
    return str((personal or workspaces or [{"id": ""}])[0].get("id"))


_LIMITS_SCRIPT = """
<script>
(function () {
  var ws = document.getElementById("gemhub-workspace");
  var data = document.getElementById("gemhub-workspace-limits");
  if (!ws || !data) { return; }
  var limits = JSON.parse(data.textContent), admin = data.getAttribute("data-admin") === "1";
  var custom = document.getElementById("gemhub-custom-spec");
  function apply() {
    var lim = limits[ws.value] || {allowed_presets: null, custom_spec: false};
    var radios = document.querySelectorAll('input[name="preset"]'), first = null, lost = false;
    for (var i = 0; i < radios.length; i++) {
      var r = radios[i];
      var ok = r.getAttribute("data-never") !== "1" &&
        (lim.allowed_presets === null || lim.allowed_presets.indexOf(r.value) >= 0);
      r.disabled = !ok;
      // say why a preset is greyed (the platform-wide reason is already in its label)
      var label = document.querySelector('label[for="' + r.id + '"]'), note = label && label.querySelector(".gemhub-ws-reason");
      if (label && !note) { note = document.createElement("small"); note.className = "gemhub-ws-reason text-muted"; label.appendChild(note); }
      if (note) { note.textContent = (!ok && r.getAttribute("data-never") !== "1") ?
        " — not allowed in workspace " + ws.options[ws.selectedIndex].getAttribute("data-name") +
        " (set by a hub administrator)" : ""; }
      if (ok && first === null) { first = r; }
      if (!ok && r.checked) { lost = true; r.checked = false; }
    }
    if (lost && first !== null) { first.checked = true; }
    if (custom) {
      var show = admin || lim.custom_spec;
      custom.hidden = !show;
      custom.querySelector("input").disabled = !show;
    }
  }
  ws.addEventListener("change", apply);
  apply();
})();
</script>
"""


def _limits(workspaces: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(w.get("id")): {"allowed_presets": w.get("allowed_presets"),
                                 "custom_spec": bool(w.get("custom_spec"))} for w in workspaces}


def _preset_choices(catalog: Catalog, selected: str, labels: Mapping[str, str],
                    never: Mapping[str, str]) -> list[str]:
    out = ['<fieldset class="form-group mb-3"><legend class="form-label">Spec preset</legend>']
    for p in catalog.presets:
        pid = f"gemhub-preset-{escape(p.name)}"
        checked = " checked" if p.name == selected else ""
        reason = never.get(p.name)
        disabled = ' disabled data-never="1"' if reason else ""
        cpu = f"{p.cpu:g} CPU"
        desc = f" — {escape(p.description)}" if p.description else ""
        accel = escape(labels.get(p.name) or f"accelerator {p.accelerator}")
        price = f"{p.price_per_hour:.2f}"
        note = f'<br><small class="text-danger">unavailable: {escape(reason)}</small>' if reason else ""
        out.append(
            f'<div class="form-check"><input class="form-check-input" type="radio" name="preset"'
            f' id="{pid}" value="{escape(p.name)}"{checked}{disabled}>'
            f'<label class="form-check-label" for="{pid}"><strong>{escape(p.display_name)}</strong>'
            f" · {cpu} · {format_memory(p.memory)} memory · <span class=\"gemhub-accel\">{accel}</span>"
            f' · <span class="gemhub-price">{price} points/hour</span>'
            f' · <span class="gemhub-use">{escape(p.use)}</span>{desc}{note}</label></div>'
        )
    out.append("</fieldset>")
    return out


def _custom_spec_field(previous: Mapping[str, Any], show: bool) -> list[str]:
    value = previous.get("accelerator")
    value = escape(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    hidden = "" if show else " hidden"
    return [
        f'<div class="form-group mb-3" id="gemhub-custom-spec"{hidden}>',
        '<label for="gemhub-accelerator" class="form-label">Custom accelerator spec (optional; '
        "replaces the preset's accelerator)</label>",
        f'<input type="text" class="form-control" id="gemhub-accelerator" name="accelerator"'
        f' value="{value}" placeholder="e.g. 0.5(A100-80G), 1(mig-1g.10gb), 1(910B)">',
        "</div>",
    ]


def render_form(
    workspaces: Iterable[Mapping[str, Any]],
    catalog: Catalog,
    previous: Mapping[str, Any] | None = None,
    base_url: str = "/",
    *,
    accelerator_labels: Mapping[str, str] | None = None,
    never_fits: Mapping[str, str] | None = None,
    is_admin: bool = False,
) -> str:
    """HTML for JupyterHub's spawn page (inserted inside its <form>).

    Option values are workspace and project *ids*; each project option carries its
    workspace's id in ``data-workspace`` for the filter.
    ``accelerator_labels``: preset name -> what its accelerator is (device model, memory);
    ``never_fits``: preset name -> why it can never run here (shown disabled). Presets the
    selected workspace may not use are disabled, and the custom spec field is shown to hub
    admins and to workspaces allowed to type one (the spawner enforces both).
    """
    previous = previous or {}
    workspaces = list(workspaces)
    sel_ws = _selected_workspace(workspaces, previous)
    sel_preset = previous.get("preset") if previous.get("preset") in catalog.names() else catalog.default
    manage = escape(base_url.rstrip("/") + "/" + MANAGE_URL)

    out = ['<div class="gemhub-spawn-options">']
    out.append('<div class="form-group mb-3">')
    out.append('<label for="gemhub-workspace" class="form-label">Workspace</label>')
    out.append('<select class="form-select form-control" id="gemhub-workspace" name="workspace_id">')
    for w in workspaces:
        ws_id, name = str(w.get("id")), str(w.get("name"))
        label = escape(name)
        if w.get("personal"):
            label += " (personal)"
        selected = " selected" if ws_id == sel_ws else ""
        out.append(f'<option value="{escape(ws_id)}" data-name="{escape(name)}"{selected}>{label}</option>')
    out.append("</select>")
    out.append(f' <a href="{manage}" target="_blank">Manage workspaces</a>')
    out.append("</div>")

    out.append('<div class="form-group mb-3">')
    out.append('<label for="gemhub-project" class="form-label">Project</label>')
    out.append('<select class="form-select form-control" id="gemhub-project" name="project_id">')
    for w in workspaces:
        ws_id = str(w.get("id"))
        projects = _projects(w)
        chosen = _default_project(projects, previous if ws_id == sel_ws else {})
        for p in projects:
            pid = str(p.get("id"))
            selected = " selected" if ws_id == sel_ws and pid == chosen else ""
            out.append(
                f'<option value="{escape(pid)}" data-workspace="{escape(ws_id)}"{selected}>'
                f"{escape(str(p.get('name')))}</option>"
            )
    out.append("</select>")
    out.append("</div>")

    out += _preset_choices(catalog, sel_preset, accelerator_labels or {}, never_fits or {})
    limits = _limits(workspaces)
    sel_limits = limits.get(sel_ws, {})
    out += _custom_spec_field(previous, is_admin or bool(sel_limits.get("custom_spec")))
    # a workspace named "</script>" must not end the element early (json.dumps keeps "/")
    payload = json.dumps(limits).replace("</", "<\\/")
    out.append(f'<script type="application/json" id="gemhub-workspace-limits"'
               f' data-admin="{1 if is_admin else 0}">{payload}</script>')
    out.append("</div>")
    out.append(_SCRIPT)
    out.append(_LIMITS_SCRIPT)
    return "\n".join(out)


def _one(formdata: Mapping[str, Any], key: str) -> str | None:
    values = formdata.get(key)
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or len(values) != 1 or not isinstance(values[0], str):
        raise RequestError(f"the form field {key!r} must have exactly one value")
    return values[0].strip() or None


_FORM_FIELDS = ("workspace_id", "project_id", "preset", "accelerator")
_ID_FIELDS = ("workspace_id", "project_id")
HOST_LABEL = "Host OS (fallback: the machine's own Python, not an image)"


def options_from_form(formdata: Mapping[str, Any]) -> dict[str, Any]:
    """user_options from the submitted form (a dict of lists of strings)."""
    # JupyterHub passes every body field, its own "_xsrf" included.
    unknown = sorted(k for k in formdata if k not in _FORM_FIELDS + ASSET_FIELDS + ("image",)
                     and not k.startswith("_"))
    if unknown:
        raise RequestError(f"unknown form field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key in _FORM_FIELDS:
        value = _one(formdata, key)
        if value is None:
            continue
        if key in _ID_FIELDS:
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise RequestError(f"the form field {key!r} must be an id, not {value[:40]!r}")
            out[key] = int(value)
        else:
            out[key] = value
    out.update(asset_choices_from_form(formdata))
    image = _one(formdata, "image")
    if image is not None:
        out["image"] = image_choice_from_form(image)
    return out


# -- images (image service) ---------------------------------------------------------------------
def render_image_choice(images: Iterable[Mapping[str, Any]], previous: Mapping[str, Any] | None = None,
                        base_url: str = "/", default: str = "base", allow_host: bool = True) -> str:
    """One select (``name="image"``), option values ``<id>:<version>`` over every built
    version the user can start, newest first, and ``host`` for the fallback where allowed.
    Preselected: the previous choice, else the default image's newest version."""
    previous = previous or {}
    before = previous.get("image")
    if isinstance(before, Mapping):
        sel = f"{before.get('id')}:{before.get('version')}"
    elif before == "host":
        sel = "host"
    else:
        sel = "host" if default == "host" else ""
    manage = escape(base_url.rstrip("/") + "/services/images/")
    options = []
    for img in images:
        built = [v for v in img.get("versions") or [] if v.get("state") == "succeeded"]
        for i, v in enumerate(reversed(built)):
            value = f"{img.get('id')}:{v.get('number')}"
            if not sel and img.get("kind") == "official" and img.get("name") == default and i == 0:
                sel = value
            owner = "official" if img.get("kind") == "official" else f"{img.get('workspace')}, {img.get('visibility')}"
            tags = [t for t in v.get("tags") or []]
            label = f"{img.get('name')} v{v.get('number')}" + (f" [{', '.join(tags)}]" if tags else "") + f" ({owner})"
            options.append((value, label))
    if allow_host:
        options.append(("host", HOST_LABEL))
    out = ['<div class="form-group mb-3 gemhub-image-options">',
           '<label for="gemhub-image" class="form-label">Image</label> '
           f'<a href="{manage}" target="_blank">Manage images</a>',
           '<select class="form-select form-control" id="gemhub-image" name="image">']
    if not options:
        out.append('<option value="">(the default image)</option>')
    for value, label in options:
        selected = " selected" if value == sel else ""
        out.append(f'<option value="{escape(value)}"{selected}>{escape(label)}</option>')
    out.append("</select></div>")
    return "\n".join(out)


def image_choice_from_form(text: str) -> Any:
    """``host`` or ``<id>:<version>`` from the image select."""
    if text == "host":
        return text
    ident, _, version = text.partition(":")
    if not ident.isdigit() or not version.isdigit() or len(text) > 24:
        raise RequestError(f"image: {text!r} is not an '<id>:<version>' choice")
    return {"id": int(ident), "version": int(version)}


# -- datasets and models (data service) ------------------------------------------------------
ASSET_FIELDS = ("datasets", "models")
_ASSET_KINDS = (("datasets", "dataset", "Datasets", "/gemini/data-{}"), ("models", "model", "Models",
                                                                          "/gemini/pretrain{}"))


def render_asset_choices(assets: Iterable[Mapping[str, Any]], previous: Mapping[str, Any] | None = None,
                         base_url: str = "/") -> str:
    """Three selects each for datasets and models (``name="datasets"``/``"models"``), option
    values ``<id>:<version>`` over every published version the user can see."""
    previous = previous or {}
    assets = list(assets)
    manage = escape(base_url.rstrip("/") + "/services/data/")
    out = ['<div class="gemhub-asset-options">']
    for field, kind, title, target in _ASSET_KINDS:
        mine = [a for a in assets if a.get("kind") == kind]
        before = [f"{c.get('id')}:{c.get('version')}" for c in previous.get(field) or [] if isinstance(c, Mapping)]
        out.append(f'<fieldset class="form-group mb-3"><legend class="form-label">{title}'
                   f' <small>(read-only, up to 3)</small> <a href="{manage}" target="_blank">Manage</a></legend>')
        for i in range(1, 4):
            sel_value = before[i - 1] if i - 1 < len(before) else ""
            path = target.format(i)
            out.append(f'<div class="mb-1"><label for="gemhub-{field}-{i}" class="form-label">{path}</label> '
                       f'<select class="form-select form-control" id="gemhub-{field}-{i}" name="{field}">')
            out.append('<option value="">(none)</option>')
            for a in mine:
                published = [v for v in a.get("versions") or [] if v.get("state") == "published"]
                for v in reversed(published):
                    value = f"{a.get('id')}:{v.get('number')}"
                    selected = " selected" if value == sel_value else ""
                    label = f"{a.get('name')} v{v.get('number')} ({a.get('workspace')}, {a.get('visibility')})"
                    out.append(f'<option value="{escape(value)}"{selected}>{escape(label)}</option>')
            out.append("</select></div>")
        out.append("</fieldset>")
    out.append("</div>")
    return "\n".join(out)


def asset_choices_from_form(formdata: Mapping[str, Any]) -> dict[str, Any]:
    """``datasets``/``models`` user_options ([{"id", "version"}]) from the selects' values."""
    out: dict[str, Any] = {}
    for field in ASSET_FIELDS:
        values = formdata.get(field) or []
        if isinstance(values, str):
            values = [values]
        chosen: list[dict[str, int]] = []
        for raw in values:
            text = raw.strip() if isinstance(raw, str) else None
            if text is None:
                raise RequestError(f"the form field {field!r} must hold text")
            if not text:
                continue
            ident, _, version = text.partition(":")
            choice = {"id": as_id(ident), "version": as_id(version)}
            if choice["id"] is None or choice["version"] is None:
                raise RequestError(f"{field}: {echo(text)} is not an '<id>:<version>' choice")
            if any(c["id"] == choice["id"] for c in chosen):
                raise RequestError(f"{field}: the same one is chosen twice")
            chosen.append(choice)
        if len(chosen) > 3:
            raise RequestError(f"at most 3 {field} can be mounted")
        if chosen:
            out[field] = chosen
    return out
