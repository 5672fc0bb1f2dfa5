"""The restricted Dockerfile: every refused instruction in lower case, over continuation
lines, inside heredocs and after a parser directive, each refusal naming its line; the
allowed ones, hints and bad text."""

from __future__ import annotations

import pytest

from gemhub.services.common.errors import BadRequest
from gemhub.services.images import policy

BASE = "localhost/gemhub/img-1:v1"

# (Dockerfile text, line named in the refusal, instruction named)
REFUSED = [
    ("FROM debian:12\nRUN true\n", 1, "FROM"),
    ("from debian:12\n", 1, "FROM"),
    ("RUN true\nexpose 8888\n", 2, "EXPOSE"),
    ("cmd [\"bash\"]\n", 1, "CMD"),
    ("entrypoint /bin/sh\n", 1, "ENTRYPOINT"),
    ("user nobody\n", 1, "USER"),
    ("onbuild run rm -rf /\n", 1, "ONBUILD RUN"),
    ("shell [\"/bin/bash\", \"-c\"]\n", 1, "SHELL"),
    ("healthcheck cmd true\n", 1, "HEALTHCHECK"),
    ("stopsignal SIGKILL\n", 1, "STOPSIGNAL"),
    ("volume /data\n", 1, "VOLUME"),
    ("arg BASE=ubuntu\n", 1, "ARG"),
    ("label a=b\n", 1, "LABEL"),
    ("maintainer me\n", 1, "MAINTAINER"),
    ("bogus thing\n", 1, "BOGUS"),
    # split over continuation lines: the keyword itself, and its arguments
    ("RUN true\nCM\\\nD [\"x\"]\n", 2, "CMD"),
    ("RUN echo a \\\n  && echo b\nEnTrYpOiNt \\\n  [\"/bin/sh\"]\n", 3, "ENTRYPOINT"),
    ("Us\\\ner root\n", 1, "USER"),
    # heredocs: refused (this builder reads their lines as instructions), naming what hides inside
    ("RUN <<EOF\necho hi\nEOF\n", 1, "RUN <<EOF"),
    ("RUN <<EOF\necho hi\ncmd bad\nEOF\n", 3, "CMD"),
    ("COPY <<EOF /etc/motd\nuser root\nEOF\n", 2, "USER"),
    # parser directives (inert after the platform's FROM, refused so nobody relies on them)
    ("# syntax=docker/dockerfile:1.4\nRUN true\n", 1, "# syntax="),
    ("# escape=`\nRUN echo `\n  hi\n", 1, "# escape="),
    ("# syntax=docker/dockerfile:1\nFROM alpine\n", 2, "FROM"),
    ("#syntax=x\n# check=skip=all\nexpose 1\n", 2, "# check="),
    # flags and sources
    ("COPY --from=builder /x /y\n", 1, "COPY --from"),
    ("copy --from=0 a b\n", 1, "COPY --from"),
    ("ADD https://example.com/x.tgz /opt/\n", 1, "ADD"),
    ("add git@github.com:a/b.git /src\n", 1, "ADD"),
    ("ADD https://github.com/a/b.git#main /src\n", 1, "ADD"),
    ("COPY ../../etc/passwd /x\n", 1, "COPY"),
    ("COPY ../.. /x\n", 1, "COPY"),
    ("COPY /etc/shadow /x\n", 1, "COPY"),
    ("COPY --link a b\n", 1, "COPY --link"),
    ("RUN --mount=type=bind,source=/,target=/host ls /host\n", 1, "RUN --mount"),
    ("run --network=host curl x\n", 1, "RUN --network"),
    ("RUN --security=insecure true\n", 1, "RUN --security"),
]


@pytest.mark.parametrize("text, line, instruction", REFUSED)
def test_refused_dockerfiles_name_the_line_and_reason(text, line, instruction):
    with pytest.raises(policy.DockerfileRefused) as e:
        policy.check(text, BASE)
    problems = e.value.problems
    assert any(p.line == line and p.instruction == instruction for p in problems), problems
    assert e.value.status == 400
    assert f"line {line}: {instruction} is not allowed" in e.value.message
    assert all(p.reason for p in problems)


def test_every_problem_is_reported_at_once():
    with pytest.raises(policy.DockerfileRefused) as e:
        policy.check("FROM x\nRUN true\nEXPOSE 80\nCMD y\n", BASE)
    assert [(p.line, p.instruction) for p in e.value.problems] == [(1, "FROM"), (3, "EXPOSE"), (4, "CMD")]


def test_allowed_instructions_build_on_the_platforms_from():
    text = ("env A=1 B=2\nWORKDIR /opt/tool\nrun pip install --no-cache-dir cowsay\n"
            "COPY requirements.txt src/ /opt/tool/\nADD --chown=1000:1000 data.tar.gz /opt/\n"
            'COPY ["with space.txt", "/opt/"]\nRUN echo "FROM inside a string is fine"\n')
    checked = policy.check(text, BASE)
    assert checked.text.startswith(f"FROM {BASE}\n")
    assert checked.text.endswith(text)
    assert checked.sources == ("requirements.txt", "src", "data.tar.gz", "with space.txt")
    assert checked.instructions == 7


def test_a_continuation_cannot_reach_the_platforms_from():
    # the user's first line is never a continuation of the FROM line
    checked = policy.check("  \\\nRUN true\n", BASE)
    assert checked.text.splitlines()[0] == f"FROM {BASE}"


def test_hints_do_not_refuse():
    text = ("RUN apt-get update && apt-get install -y curl\nRUN pip install numpy\n"
            "RUN python -m pip install --no-cache-dir x\nENV A=1\nRUN true\n")
    hints = policy.check(text, BASE).hints
    messages = [(h.line, h.message.split(" ")[0]) for h in hints]
    assert (1, "apt") in messages
    assert (2, "this") in messages  # RUN after RUN: merge them
    assert (2, "pip") in messages   # pip without --no-cache-dir
    assert not any(line == 3 and word == "pip" for line, word in messages)
    assert not any(line == 5 for line, _ in messages)  # a RUN after ENV is not "consecutive"


def test_cleaned_apt_lists_give_no_hint():
    text = "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
    assert policy.check(text, BASE).hints == ()


@pytest.mark.parametrize("raw, message", [
    ("RUN x\n" * 20000, "bytes long"),
    (b"\x00\xff\xfe binary", "UTF-8"),
    ("RUN echo \x00\n", "control character"),
    ("RUN echo \x1b[31m\n", "control character"),
    ("", "empty"),
    ("   \n\n", "empty"),
    ("# only a comment\n", "no instruction"),
    (42, "must be text"),
    (None, "must be text"),
])
def test_text_that_is_not_a_dockerfile_is_a_400(raw, message):
    with pytest.raises(BadRequest, match=message) as e:
        policy.check(raw, BASE)
    assert e.value.status == 400


def test_two_megabytes_are_refused_before_parsing():
    with pytest.raises(BadRequest, match="at most 65536"):
        policy.check("#" * (2 * 1024 * 1024), BASE)
