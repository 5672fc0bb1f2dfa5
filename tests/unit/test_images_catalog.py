"""The official catalog in images/: every entry loads and lints (BuildKit's parser), cluster
builds are declared as such, the platform's own images are never offered; the build
sandbox's command line and the build context's refusals."""

from __future__ import annotations

import os
from pathlib import Path

import dockerfile
import pytest

from gemhub.services.images import catalog, context, official, storage
from gemhub.services.images.catalog import CatalogError

IMAGES = Path(__file__).resolve().parents[2] / "images"
OCI_LABELS = ("org.opencontainers.image.title", "org.opencontainers.image.description",
              "org.opencontainers.image.version", "org.opencontainers.image.vendor")


def test_the_catalog_has_base_pytorch_tensorflow_and_cluster_variants():
    entries = catalog.load(IMAGES)
    assert {"base", "pytorch", "pytorch-cuda", "tensorflow", "ascend-cann"} <= set(entries)
    assert entries["base"].autobuild and entries["base"].build == "local"
    assert entries["base"].parent == catalog.DEBIAN_ROOT
    assert entries["pytorch"].parent == "base" and entries["tensorflow"].parent == "base"
    assert entries["pytorch-cuda"].cluster_only and "nvidia" in entries["pytorch-cuda"].accelerators
    assert entries["ascend-cann"].cluster_only and "ascend" in entries["ascend-cann"].accelerators
    # parents come first, recipes differ and follow the parent's
    keys = list(entries)
    assert keys.index("base") < keys.index("pytorch")
    assert len({e.recipe for e in entries.values()}) == len(entries)


@pytest.mark.parametrize("key", sorted(catalog.load(IMAGES)))
def test_every_containerfile_lints(key):
    entry = catalog.load(IMAGES)[key]
    commands = dockerfile.parse_file(str(entry.containerfile))
    names = [c.cmd.upper() for c in commands]
    # the parent comes in as ARG BASE, so the image service decides what it builds on
    assert names[:2] == ["ARG", "FROM"] and commands[0].value[0].startswith("BASE=")
    assert commands[1].value[0] == "${BASE}"
    assert names.count("FROM") == 1 and "CMD" not in names and "ENTRYPOINT" not in names and "USER" not in names
    labels = " ".join(" ".join(c.value) for c in commands if c.cmd.upper() == "LABEL")
    for label in OCI_LABELS + ("io.gemhub.accelerators",):
        assert label in labels, (key, label)
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd.upper() == "RUN")
    # pinned versions of what matters, no pip cache, apt lists cleaned
    assert "pip install" not in runs or "--no-cache-dir" in runs
    assert "apt-get install" not in runs or "rm -rf /var/lib/apt/lists/*" in runs
    for package, version in entry.pins.items():
        if package in ("python", "cuda", "cudnn", "cann"):
            continue
        assert f"{package}=={version}" in runs, (key, package)
    if entry.needs_gemhub or entry.key == "base":
        assert "jupyterhub==" in runs + " ".join(" ".join(c.value) for c in commands)
    assert entry.description


def test_platform_images_and_folders_without_metadata_are_not_offered(tmp_path):
    for name in ("hub", "notes", "base"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Containerfile").write_text("ARG BASE=x\nFROM ${BASE}\n")
    meta = "title: t\nparent: debian-root\nbuild: local\naccelerators: [cpu]\nversion: '1'\n"
    (tmp_path / "hub" / "image.yaml").write_text(meta)  # even with metadata: a platform image
    (tmp_path / "base" / "image.yaml").write_text(meta)
    assert list(catalog.load(tmp_path)) == ["base"]


@pytest.mark.parametrize("meta, message", [
    ("title: t\nparent: nowhere\nbuild: local\naccelerators: [cpu]\nversion: '1'\n", "not in the catalog"),
    ("title: t\nparent: debian-root\nbuild: somewhere\naccelerators: [cpu]\nversion: '1'\n", "build must be"),
    ("title: t\nparent: debian-root\nbuild: local\naccelerators: [tpu]\nversion: '1'\n", "accelerators"),
    ("title: t\nparent: external\nbuild: local\naccelerators: [cpu]\nversion: '1'\n", "cluster build"),
    ("title: t\nparent: debian-root\nbuild: local\naccelerators: [cpu]\nversion: '1'\nextra: 1\n", "unknown key"),
    ("- a list\n", "mapping"),
])
def test_malformed_entries_name_the_folder(tmp_path, meta, message):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "Containerfile").write_text("ARG BASE=x\nFROM ${BASE}\n")
    (tmp_path / "x" / "image.yaml").write_text(meta)
    with pytest.raises(CatalogError, match=message):
        catalog.load(tmp_path)


def test_recipe_reference_and_parent():
    entries = catalog.load(IMAGES)
    assert official.parent_reference(entries["base"], entries) == storage.DEBIAN_ROOT
    assert official.parent_reference(entries["pytorch"], entries) == official.recipe_reference(entries["base"])
    assert official.recipe_reference(entries["base"]).endswith(entries["base"].recipe[:16])


def test_the_build_sandbox_hides_the_state_and_runs_buildah_as_pid_1():
    store = storage.Store("/srv/state", "overlay")
    argv = storage.sandboxed(store, storage.bud_argv(store, "/srv/state/images/contexts/7.Containerfile",
                                                     "/srv/state/images/contexts/7", "localhost/gemhub/img-1:v2"),
                             binds=["/srv/state/images/contexts/7"],
                             ro_binds=["/srv/state/images/contexts/7.Containerfile"])
    assert argv[0] == "bwrap"
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    # /tmp and the state directory are empty tmpfs; only buildah's storage and the build's own folders return
    assert opts.index("/tmp") < opts.index("/srv/state")
    assert opts[opts.index("/srv/state") - 1] == "--tmpfs"
    binds = [opts[i + 1] for i, o in enumerate(opts) if o in ("--bind", "--ro-bind")]
    assert binds == ["/srv/state/images/storage", "/srv/state/images/run", "/srv/state/images/tmp",
                     "/srv/state/images/contexts/7", "/srv/state/images/contexts/7.Containerfile"]
    for flag in ("--unshare-pid", "--as-pid-1", "--die-with-parent"):
        assert flag in opts
    assert cmd[:1] == ["buildah"] and "--isolation" in cmd and cmd[cmd.index("--isolation") + 1] == "chroot"
    assert "--pull=never" in cmd
    dropped = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--cap-drop"]
    assert {"CAP_SYS_CHROOT", "CAP_KILL", "CAP_MKNOD"} <= set(dropped)


# -- build contexts ----------------------------------------------------------------------
def _code(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    (code / "src" / "pkg").mkdir(parents=True)
    (code / "requirements.txt").write_text("cowsay\n")
    (code / "src" / "pkg" / "a.py").write_text("print(1)\n")
    (code / "src" / "b.txt").write_text("b")
    (code / "notes.md").write_text("n")
    return code


def test_context_copies_only_the_named_sources(tmp_path):
    code = _code(tmp_path)
    dest = tmp_path / "ctx"
    done = context.assemble(code, ("requirements.txt", "src/*.txt", "src/pkg"), dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["requirements.txt", "src/b.txt", "src/pkg/a.py"]
    assert done.files == 3
    assert (dest.stat().st_mode & 0o777) == 0o700


def test_context_of_the_whole_folder(tmp_path):
    code = _code(tmp_path)
    done = context.assemble(code, (".",), tmp_path / "ctx")
    assert done.files == 4


@pytest.mark.parametrize("make, source, message", [
    (lambda c: os.symlink("/etc/passwd", c / "link"), "link", "symbolic link"),
    (lambda c: os.symlink("/etc", c / "src" / "etc"), "src", "symbolic link"),
    (lambda c: os.symlink("/", c / "up"), "up/etc/passwd", "symbolic link"),
    (lambda c: os.link(c / "notes.md", c / "hard.md"), "hard.md", "hard links"),
    (lambda c: os.mkfifo(c / "fifo"), "fifo", "not a regular file"),
    (lambda c: None, "missing.txt", "not in the project's code folder"),
    (lambda c: None, "notes.md/x", "not in the project's code folder"),
])
def test_context_refuses_links_and_specials_and_leaves_nothing(tmp_path, make, source, message):
    code = _code(tmp_path)
    make(code)
    dest = tmp_path / "ctx"
    with pytest.raises(context.ContextError, match=message) as e:
        context.assemble(code, (source,), dest)
    assert e.value.status == 400
    assert not dest.exists()


def test_context_limits(tmp_path):
    code = _code(tmp_path)
    with pytest.raises(context.ContextError, match="more than 3 bytes"):
        context.assemble(code, (".",), tmp_path / "a", context.Limits(max_bytes=3))
    with pytest.raises(context.ContextError, match="more than 2 files"):
        context.assemble(code, (".",), tmp_path / "b", context.Limits(max_files=2))
