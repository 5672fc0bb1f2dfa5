"""The restricted Dockerfile of a custom image (seed 000 §8.2), checked as the builder reads it (pure).

A user writes the part of a Dockerfile after ``FROM``: the platform puts its own ``FROM``
(the chosen base image) first and parses the whole text with BuildKit's own parser (the
``dockerfile`` package wraps it), so continuation lines, lower-case keywords, JSON forms
and heredocs are seen exactly as buildah sees them. Because the platform's ``FROM`` is the
first line, parser directives in the user's text (``# syntax=``, ``# escape=``) are inert
comments to the builder; they are refused anyway, so nobody believes they took effect.

Allowed: ``ENV``, ``RUN``, ``COPY``, ``ADD``, ``WORKDIR``. Everything else is refused with
its line and the reason; so are ``COPY --from``, ``ADD`` of a URL or a git repository,
``RUN --mount``/``--network``/``--security`` and sources outside the build context.
Hints (merge RUNs, clean apt lists, ``pip --no-cache-dir``) never refuse anything.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, field

import dockerfile

from gemhub.services.common.errors import BadRequest

MAX_BYTES = 64 * 1024
MAX_INSTRUCTIONS = 200
ALLOWED = ("ENV", "RUN", "COPY", "ADD", "WORKDIR")
DIRECTIVES = ("syntax", "escape", "check")
COPY_FLAGS = ("--chown", "--chmod")

# Why each refused instruction is refused (what a person reads next to the line).
REFUSED = {
    "FROM": "the platform sets the base image: choose it in the form, not in the Dockerfile",
    "EXPOSE": "environments publish no ports; reach a server inside with JupyterLab's proxy or ssh -L",
    "CMD": "the platform decides what starts in an environment (JupyterLab)",
    "ENTRYPOINT": "the platform decides what starts in an environment (JupyterLab)",
    "USER": "environments always run as your own account (RUN steps run as root while building)",
    "ONBUILD": "build triggers would run inside other people's builds",
    "SHELL": "RUN always uses /bin/sh -c",
    "HEALTHCHECK": "the platform checks whether an environment is healthy",
    "STOPSIGNAL": "the platform stops environments",
    "VOLUME": "storage is /gemini/code, /gemini/output and the dataset mounts; volumes are not supported",
    "ARG": "build arguments could change the platform's FROM and are not supported; use ENV",
    "LABEL": "the platform sets the image's labels (org.opencontainers.image.*)",
    "MAINTAINER": "MAINTAINER is deprecated; write who maintains the image in its description",
}


class DockerfileRefused(BadRequest):
    """The Dockerfile breaks the rules; ``problems`` holds every (line, reason)."""

    def __init__(self, problems: list["Problem"]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def to_json(self) -> dict:
        return {**super().to_json(), "problems": [p.to_json() for p in self.problems]}


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based, in the user's text
    instruction: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.instruction} is not allowed: {self.reason}"


    def to_json(self) -> dict:
        return {"line": self.line, "instruction": self.instruction, "reason": self.reason}


@dataclass(frozen=True)
class Hint:
    line: int
    message: str

    def to_json(self) -> dict:
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True)
class Checked:
    """An accepted Dockerfile: the full text buildah builds, the context sources it
    copies (paths relative to the project's code folder) and the hints."""

    text: str
    user_text: str
    sources: tuple[str, ...] = ()
    hints: tuple[Hint, ...] = ()
    instructions: int = 0
    problems: tuple[Problem, ...] = field(default=())

    def with_labels(self, labels: dict[str, str]) -> str:
        """The text with the platform's labels as one last LABEL instruction (one layer,
        where ``buildah bud --label`` makes a step per label)."""
        if not labels:
            return self.text
        pairs = " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
        text = f"{self.text}LABEL {pairs}\n"
        commands = dockerfile.parse_string(text)
        # the user's text ends with a complete instruction (checked): the LABEL stands alone
        if len(commands) != self.instructions + 2 or commands[-1].cmd.upper() != "LABEL":
            raise BadRequest("the Dockerfile's last instruction does not end where it should")
        return text


def check_text(raw: object) -> str:
    """The user's Dockerfile as text: UTF-8, no NUL or other control characters, at most 64 KiB."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_BYTES:
            raise BadRequest(f"the Dockerfile is {len(raw)} bytes long (at most {MAX_BYTES})")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the Dockerfile is not UTF-8 text") from None
    if not isinstance(raw, str):
        raise BadRequest(f"dockerfile must be text, not {type(raw).__name__}")
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise BadRequest(f"the Dockerfile is {size} bytes long (at most {MAX_BYTES})")
    for number, line in enumerate(raw.split("\n"), 1):
        bad = next((c for c in line if (ord(c) < 32 and c not in "\t\r") or ord(c) == 127), None)
        if bad is not None:
            raise BadRequest(f"line {number}: the Dockerfile holds a control character ({ord(bad):#04x});"
                             " it must be plain text")
    return raw


def _directives(text: str) -> list[Problem]:
    """Leading ``# key=value`` comments that BuildKit would read as parser directives at
    the top of a file (BuildKit stops looking at the first other line)."""
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        key, eq, _ = stripped[1:].partition("=")
        if eq and key.strip().lower() in DIRECTIVES:
            out.append(Problem(number, f"# {key.strip().lower()}=",
                               "parser directives are not allowed: the platform's parser settings apply"))
        elif not eq:
            break
    return out


def _heredoc_problems(cmd, line: int) -> list[Problem]:
    """Heredocs are refused (the build engine here predates them and would read their
    lines as instructions); name a refused instruction hidden in one."""
    out = [Problem(line, f"{cmd.cmd.upper()} <<{cmd.heredocs[0].name}",
                   "heredocs are not supported by the image builder; use RUN with && and \\ continuation")]
    for doc in cmd.heredocs:
        for offset, body_line in enumerate(doc.content.split("\n"), 1):
            word = body_line.strip().split(" ", 1)[0].upper()
            if word in REFUSED:
                out.append(Problem(line + offset, word, REFUSED[word] + " (even inside a heredoc)"))
    return out


def _is_remote(source: str) -> bool:
    lowered = source.lower()
    return "://" in lowered or lowered.startswith("git@") or lowered.endswith(".git")


def _source(source: str, line: int, instruction: str) -> tuple[str | None, Problem | None]:
    """A COPY/ADD source as a normalised path inside the build context."""
    if instruction == "ADD" and _is_remote(source):
        return None, Problem(line, "ADD", f"{source!r} is a URL or git repository; sources come from your"
                                          " project's code folder only (download inside a RUN instead)")
    if source.startswith("/"):
        return None, Problem(line, instruction, f"source {source!r} is absolute; sources are paths relative to"
                                                " your project's code folder (/gemini/code)")
    normal = posixpath.normpath(source)
    if normal == ".." or normal.startswith("../"):
        return None, Problem(line, instruction, f"source {source!r} leaves your project's code folder")
    if "\\" in source:
        return None, Problem(line, instruction, f"source {source!r} holds a backslash")
    return normal, None


def _copy(cmd, line: int) -> tuple[list[str], list[Problem]]:
    instruction = cmd.cmd.upper()
    problems, sources = [], []
    for flag in cmd.flags:
        name = flag.split("=", 1)[0].lower()
        if name == "--from":
            problems.append(Problem(line, f"{instruction} --from", "copying from another image or stage is not"
                                                                    " allowed; sources come from your code"))
        elif name not in COPY_FLAGS:
            problems.append(Problem(line, f"{instruction} {name}", f"only {', '.join(COPY_FLAGS)} are allowed"))
    if len(cmd.value) < 2:
        problems.append(Problem(line, instruction, "needs at least one source and a destination"))
        return sources, problems
    for raw in cmd.value[:-1]:
        normal, problem = _source(raw, line, instruction)
        if problem is not None:
            problems.append(problem)
        else:
            sources.append(normal)
    return sources, problems


def _hints(commands: list, offset: int) -> list[Hint]:
    hints: list[Hint] = []
    previous_run = None
    for cmd in commands:
        line = cmd.start_line - offset
        if cmd.cmd.upper() != "RUN":
            previous_run = None
            continue
        if previous_run is not None:
            hints.append(Hint(line, f"this RUN follows the RUN on line {previous_run}: merge them with && to"
                                    " make one layer (smaller, faster to build)"))
        previous_run = line
        text = " ".join(cmd.value)
        try:
            words = shlex.split(text, comments=False)
        except ValueError:
            words = text.split()
        if "apt-get" in words or "apt" in words:
            if "install" in words and "/var/lib/apt/lists/*" not in words and "/var/lib/apt/lists" not in words:
                hints.append(Hint(line, "apt lists are not cleaned: end this RUN with"
                                        " && rm -rf /var/lib/apt/lists/* to keep the image small"))
        for i, word in enumerate(words):
            if word in ("pip", "pip3") or word.endswith("/pip") or (
                    word == "-m" and i + 1 < len(words) and words[i + 1] == "pip"):
                rest = words[i + 1:]
                if "install" in rest and "--no-cache-dir" not in rest:
                    hints.append(Hint(line, "pip install without --no-cache-dir keeps pip's download"
                                            " cache in the image"))
                break
    return hints


def check(user_text: object, base_reference: str) -> Checked:
    """Check the user's part of a Dockerfile; the result's ``text`` starts with ``FROM base_reference``.

    Raises :class:`DockerfileRefused` (a 400) listing every refused line, or BadRequest
    for text that is not a Dockerfile at all.
    """
    text = check_text(user_text)
    if not text.strip():
        raise BadRequest("the Dockerfile is empty: write at least one RUN, COPY, ADD, ENV or WORKDIR line")
    problems = _directives(text)
    full = f"FROM {base_reference}\n{text}"
    if not full.endswith("\n"):
        full += "\n"
    try:
        commands = list(dockerfile.parse_string(full))
    except dockerfile.GoParseError as e:
        raise BadRequest(f"the Dockerfile cannot be parsed: {e}") from None
    # the platform's own FROM is the first instruction, on line 1
    if not commands or commands[0].start_line != 1 or commands[0].cmd.upper() != "FROM":
        raise BadRequest("the Dockerfile cannot be parsed after the platform's FROM line")
    offset = 1
    user_commands = commands[1:]
    if len(user_commands) > MAX_INSTRUCTIONS:
        raise BadRequest(f"the Dockerfile has {len(user_commands)} instructions (at most {MAX_INSTRUCTIONS})")
    sources: list[str] = []
    for cmd in user_commands:
        line = cmd.start_line - offset
        instruction = cmd.cmd.upper()
        if cmd.heredocs:
            problems.extend(_heredoc_problems(cmd, line))
            continue
        if instruction not in ALLOWED:
            if instruction == "ONBUILD" and cmd.sub_cmd:
                instruction = f"ONBUILD {cmd.sub_cmd.upper()}"
            reason = REFUSED.get(cmd.cmd.upper(), f"only {', '.join(ALLOWED)} are allowed")
            problems.append(Problem(line, instruction, reason))
            continue
        if instruction in ("COPY", "ADD"):
            found, refused = _copy(cmd, line)
            sources.extend(found)
            problems.extend(refused)
        elif cmd.flags:
            problems.append(Problem(line, f"{instruction} {cmd.flags[0].split('=', 1)[0]}",
                                    f"{instruction} takes no flags here (no mounts, networks or security modes)"))
        elif instruction in ("WORKDIR", "ENV") and not any(v.strip() for v in cmd.value):
            problems.append(Problem(line, instruction, "needs a value"))
    if problems:
        raise DockerfileRefused(sorted(problems, key=lambda p: p.line))
    if not user_commands:
        raise BadRequest("the Dockerfile has no instruction: write at least one RUN, COPY, ADD, ENV or WORKDIR line")
    return Checked(text=full, user_text=text, sources=tuple(dict.fromkeys(sources)),
                   hints=tuple(_hints(user_commands, offset)), instructions=len(user_commands))
