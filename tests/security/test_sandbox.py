"""Attacks from inside an environment on the local runtime: each test plays a hostile user in
a real spawned environment (notebook kernel, terminal) and asserts the attack fails.

The shared session hub runs with the default simulated devices (A100-80G, RTX4090, 910B).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from attack import DATA, kernel_json, publish_dataset
from labclient import new_terminal, type_in_terminal

from gemhub.spawner.local import devnodes, names

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(scope="module")
def victim(hub, tenants):
    """A user with a running environment, a private dataset and a file in their home."""
    name, token = tenants.new("vic")
    tenants.start(name, token)
    secret = f"VICTIM-SECRET-{name}".encode()
    asset = publish_dataset(hub, token, f"private-{name}", secret)
    kernel_json(hub, name, token, f"import json, os; open(os.path.expanduser('~/secret.txt'), 'w')"
                                  f".write({secret.decode()!r}); print(json.dumps({{'ok': 1}}))")
    return {"name": name, "token": token, "asset": asset, "secret": secret.decode()}


@pytest.fixture(scope="module")
def attacker(hub, tenants):
    name, token = tenants.new("att")
    tenants.start(name, token)
    return name, token


READ_ATTEMPTS = r"""
import json, os
results = {}
for path in PATHS:
    try:
        with open(path, "rb") as f:
            results[path] = "READ " + f.read(64).decode("latin-1")
    except OSError as e:
        results[path] = type(e).__name__
print(json.dumps({"results": results, "root": sorted(os.listdir("/")),
                  "uid": os.getuid(), "groups": os.getgroups()}))
"""


def _targets(hub, victim) -> list[str]:
    state = hub.state_dir
    victim_unit = names.unit_name(names.unix_name(victim["name"]))
    # the -wal files hold the latest commits (the hub's runs in WAL mode too)
    paths = [state / "db" / f for f in ("jupyterhub.sqlite", "jupyterhub.sqlite-wal", "quota.sqlite",
                                         "ssh.sqlite", "data.sqlite")]
    paths += sorted((state / "secrets").iterdir())
    paths += [state / "logs" / "servers" / f"{victim_unit}.log",
              state / "users" / victim["name"] / "home" / "secret.txt",
              state / "datasets" / str(victim["asset"]["id"]) / "1" / "secret.txt",
              Path(f"/home/{names.unix_name(victim['name'])}/secret.txt")]
    for p in paths[:-1]:
        assert p.exists(), f"the test's target {p} should exist on the host"
    return [str(p) for p in paths]


def test_state_files_and_other_tenants_data_are_out_of_reach_from_a_kernel(hub, victim, attacker):
    name, token = attacker
    targets = _targets(hub, victim)
    out = kernel_json(hub, name, token, f"PATHS = {targets!r}\n" + READ_ATTEMPTS)
    assert all(not r.startswith("READ") for r in out["results"].values()), out["results"]
    assert set(out["results"].values()) == {"FileNotFoundError"}, out["results"]  # not even visible
    # the root holds the OS, the environment's Python and its own folders: no state, no repo
    assert set(out["root"]) <= {"usr", "etc", "bin", "lib", "lib64", "sbin", "proc", "dev", "tmp", "var",
                                "home", "gemini", "opt", "run", *Path(os.sys.prefix).parts[1:2]}, out["root"]
    assert out["uid"] != 0 and 0 not in out["groups"]


def test_the_state_directory_is_private_even_outside_a_sandbox(hub, victim, attacker):
    """Defence in depth: the files themselves are root-only (0700 folders, 0600 files), so a
    process of the account that somehow ran outside its sandbox still reads nothing."""
    name, _ = attacker
    unix = names.unix_name(name)
    for target in _targets(hub, victim)[:-1]:
        r = subprocess.run(["setpriv", f"--reuid={unix}", f"--regid={unix}", "--init-groups", "--",
                            "cat", target], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (target, r.stdout[:80], r.stderr)
    for sub in ("db", "secrets", "logs"):
        for p in (hub.state_dir / sub).rglob("*"):
            mode = p.lstat().st_mode & 0o777
            assert mode & 0o077 == 0, (p, oct(mode))
    assert hub.state_dir.stat().st_mode & 0o077 == 0


def test_a_terminal_sees_no_state_either(hub, victim, attacker):
    name, token = attacker
    term = new_terminal(hub, name, token)
    db = hub.state_dir / "db" / "jupyterhub.sqlite"
    out = type_in_terminal(hub, name, token, term, f"cat {db}; ls {hub.state_dir}; echo END-$?", settle=4)
    assert "No such file or directory" in out and "SQLite format" not in out, out


def test_save_output_never_publishes_what_a_swapped_link_points_at(hub, tenants, attacker):
    """The attacker keeps swapping a file (and its folder) in their output for links to a
    root-only file while saving that output as a model version, again and again."""
    name, token = attacker
    secret_file = hub.state_dir / "secrets" / "data-service.token"
    secret = secret_file.read_text().strip()
    r = hub.request("POST", f"{DATA}/assets", token=token, json={"kind": "model", "name": f"race-{name}"})
    assert r.status_code == 201, r.text
    model = r.json()["id"]
    swapper = f"""
import os, subprocess, sys, json
script = '''
import os, time
target = {str(secret_file)!r}
base = "/gemini/output/run"
os.makedirs(base, exist_ok=True)
end = time.time() + 60
i = 0
while time.time() < end:
    i += 1
    with open(base + "/.f", "w") as f:
        f.write("harmless")
    os.rename(base + "/.f", base + "/data.txt")
    try:
        os.symlink(target, base + "/.l")
    except FileExistsError:
        pass
    os.rename(base + "/.l", base + "/data.txt")
    if i % 3 == 0:  # the folder itself, too
        os.rename(base, "/gemini/output/.run")
        try:
            os.symlink(os.path.dirname(target), "/gemini/output/run")
        except FileExistsError:
            pass
        os.unlink("/gemini/output/run")
        os.rename("/gemini/output/.run", base)
'''
subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
print(json.dumps({{"started": True}}))
"""
    assert kernel_json(hub, name, token, swapper)["started"]
    statuses = []
    deadline = time.monotonic() + 45
    for _ in range(30):
        if time.monotonic() > deadline:
            break
        r = hub.request("POST", f"{DATA}/assets/{model}/versions", token=token,
                        json={"from_output": {"path": "/gemini/output/run"}})
        statuses.append(r.status_code)
        assert r.status_code < 500, r.text
    assert statuses and set(statuses) <= {201, 400, 404, 409}, statuses
    versions = hub.state_dir / "models" / str(model)
    for f in versions.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert secret not in f.read_text(errors="replace"), f"{f} holds the secret"
        assert not f.is_symlink(), f
    drafts = versions / "drafts"
    assert not drafts.exists() or not any(drafts.iterdir()), list(drafts.iterdir())
    # a new draft after all those failures starts empty
    r = hub.request("POST", f"{DATA}/assets/{model}/versions", token=token, json={})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    listing = hub.request("GET", f"{DATA}/assets/{model}/versions/{number}/files", token=token).json()
    assert listing["items"] == [], listing


def test_colliding_names_get_separate_accounts(hub, tenants):
    """``ab.cd…`` and ``ab-cd…-<its legacy hash>`` once shared one unix account."""
    base = f"ab{os.urandom(3).hex()}"
    victim_name = f"{base}.cd"
    attacker_name = names.legacy_unix_name(victim_name).removeprefix("gem-")
    assert names.legacy_unix_name(attacker_name) == names.legacy_unix_name(victim_name)  # the old collision
    victim, vtoken = tenants.new(name=victim_name)
    attacker, atoken = tenants.new(name=attacker_name)
    tenants.start(victim, vtoken)
    tenants.start(attacker, atoken)
    kernel_json(hub, victim, vtoken, "import json, os; open(os.path.expanduser('~/mine.txt'), 'w').write('V');"
                                     "print(json.dumps({'uid': os.getuid()}))")
    seen = kernel_json(hub, attacker, atoken, f"""
import json, os
try:
    text = open("/home/{names.unix_name(victim)}/mine.txt").read()
except OSError as e:
    text = type(e).__name__
print(json.dumps({{"uid": os.getuid(), "user": os.environ["USER"], "victim_file": text,
                   "home": sorted(os.listdir("/home"))}}))
""")
    assert names.unix_name(victim) != names.unix_name(attacker)
    assert seen["user"] == names.unix_name(attacker) and seen["victim_file"] == "FileNotFoundError"
    assert seen["home"] == [names.unix_name(attacker)]


def test_devices_only_the_allotted_node_exists_and_the_cgroup_refuses_the_others(hub, tenants):
    name, token = tenants.new("dev")
    tenants.start(name, token, preset="S1")  # one whole (simulated) RTX4090
    held = json.loads(kernel_json(hub, name, token,
                                  "import json, os; print(json.dumps({'a': os.environ['GEMHUB_ACCELERATOR']}))")["a"])
    (device,) = held["devices"]
    mine = f"nvidia{device['index']}"
    attack = """
import errno, json, os
for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_MPS_PIPE_DIRECTORY"):
    os.environ.pop(var, None)          # what the attacker unsets: it changes nothing below
opened = {}
for n in [f"nvidia{i}" for i in range(8)] + [f"davinci{i}" for i in range(8)] + ["nvidiactl"]:
    try:
        os.close(os.open("/dev/" + n, os.O_RDWR))
        opened[n] = "OPENED"
    except OSError as e:
        opened[n] = errno.errorcode[e.errno]
print(json.dumps({"dev": sorted(os.listdir("/dev")), "opened": opened}))
"""
    out = kernel_json(hub, name, token, attack)
    accel = sorted(d for d in out["dev"] if d.startswith(("nvidia", "davinci")))
    assert accel == sorted([mine, "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"]), out["dev"]
    # the allotted node is let through (a simulated node has no driver: ENXIO); no other exists
    assert out["opened"][mine] == "ENXIO" and out["opened"]["nvidiactl"] == "ENXIO", out["opened"]
    assert all(v == "ENOENT" for k, v in out["opened"].items() if k not in (mine, "nvidiactl")), out["opened"]
    assert held["binding"] == "nodes"
    # the devices cgroup refuses other nodes even to root inside it (a node reached any other way)
    unit = names.unit_name(names.unix_name(name))
    procs = Path("/sys/fs/cgroup/devices/gemhub") / unit / "cgroup.procs"
    assert procs.exists()
    other = next(f"nvidia{i}" for i in range(4) if f"nvidia{i}" != mine)
    nodes = devnodes.simulated_dir(hub.state_dir)
    probe = ("import errno, os, sys\n"
             "for p in sys.argv[1:]:\n"
             "    try:\n        os.close(os.open(p, os.O_RDWR)); print('OPENED')\n"
             "    except OSError as e:\n        print(errno.errorcode[e.errno])\n")
    r = subprocess.run(["sh", "-c", f'echo $$ > {procs} && exec python3 -c "$0" "$@"', probe,
                        str(nodes / other), str(nodes / mine)], capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["EPERM", "ENXIO"], (r.stdout, r.stderr)


def test_an_environment_without_accelerators_has_no_device_nodes(hub, attacker):
    name, token = attacker  # preset B1
    out = kernel_json(hub, name, token, "import json, os; print(json.dumps(sorted(os.listdir('/dev'))))")
    assert not [d for d in out if d.startswith(("nvidia", "davinci"))], out


NEW_USER_NAMESPACE = r"""
import ctypes, errno, json, os, subprocess, threading
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, argv in {"unshare": ["unshare", "--user", "id", "-u"],
                   "map-root": ["unshare", "--user", "--map-root-user", "id", "-u"]}.items():
    r = subprocess.run(argv, capture_output=True, text=True)
    out[name] = [r.returncode, r.stdout.strip(), r.stderr.strip()[-200:]]
out["unshare(2)"] = [libc.unshare(CLONE_NEWUSER), errno.errorcode.get(ctypes.get_errno())]
# raw clone(2) with CLONE_NEWUSER in a throwaway child (if it were allowed, its copy exits at once)
probe = ("import ctypes, errno, os\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         f"r = libc.syscall(56, {CLONE_NEWUSER | SIGCHLD}, 0, 0, 0, 0)\n"
         "os._exit(0) if r == 0 else print(r, errno.errorcode.get(ctypes.get_errno()))")
out["clone(2)"] = subprocess.run(["python3", "-c", probe], capture_output=True, text=True).stdout.split()
out["clone3(2)"] = [libc.syscall(435, None, 0), errno.errorcode.get(ctypes.get_errno())]
# ordinary work is untouched: threads (clone3 falls back to clone), subprocesses
t = threading.Thread(target=lambda: None); t.start(); t.join()
out["subprocess"] = subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip()
print(json.dumps(out))
"""


def test_no_user_namespace_from_a_kernel_or_a_terminal(hub, attacker):
    """The sandbox's seccomp filter: unshare/clone with CLONE_NEWUSER are EPERM, clone3 is
    ENOSYS (libraries fall back to clone), everything else runs as before."""
    name, token = attacker
    out = kernel_json(hub, name, token, NEW_USER_NAMESPACE)
    uid = str(pwd.getpwnam(names.unix_name(name)).pw_uid)
    for tool in ("unshare", "map-root"):
        rc, stdout, stderr = out[tool]
        assert rc != 0 and stdout == "" and "Operation not permitted" in stderr, out
    assert out["unshare(2)"] == [-1, "EPERM"], out
    assert out["clone(2)"] == ["-1", "EPERM"], out
    assert out["clone3(2)"] == [-1, "ENOSYS"], out
    assert out["subprocess"] == uid and uid != "0", out
    term = new_terminal(hub, name, token)
    text = type_in_terminal(hub, name, token, term, "unshare -U -r id -u; echo END-$?", settle=4)
    assert "Operation not permitted" in text and "END-1" in text, text


MAP_OTHER_IDS = r"""
import json, subprocess, time
target = subprocess.Popen(["unshare", "--user", "sleep", "30"])
time.sleep(1)
unshared = target.poll() is None
tries = {}
for tool in ("newuidmap", "newgidmap"):
    r = subprocess.run([tool, str(target.pid), "0", "0", "1"], capture_output=True, text=True)
    tries[tool] = [r.returncode, r.stderr.strip()[-200:]]
maps = {f: open(f"/proc/{target.pid}/{f}").read() if unshared else "" for f in ("uid_map", "gid_map")}
target.kill()
print(json.dumps({"unshared": unshared, "tries": tries, "maps": maps}))
"""


def test_an_account_cannot_map_other_ids_in_a_user_namespace(hub, attacker):
    """Environment accounts get no subordinate uid/gid ranges (and run under no_new_privs):
    the setuid newuidmap/newgidmap grant a new user namespace nothing, root least of all."""
    name, token = attacker
    out = kernel_json(hub, name, token, MAP_OTHER_IDS)
    assert not out["unshared"], out  # the filter above already refuses the namespace
    assert all(rc != 0 for rc, _ in out["tries"].values()), out
    assert out["maps"] == {"uid_map": "", "gid_map": ""}, out
    unix = names.unix_name(name)
    for table in ("/etc/subuid", "/etc/subgid"):
        assert not [line for line in Path(table).read_text().splitlines() if line.split(":")[0] == unix]
