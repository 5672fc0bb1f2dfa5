"""Parsing and checking the public keys users register (pure: asyncssh's key parser only).

A key is accepted in OpenSSH's one-line form (``ssh-ed25519 AAAA... comment``, the content
of ``~/.ssh/id_*.pub``); anything else is refused with a message saying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

MAX_KEY_TEXT = 16 * 1024
MAX_NAME = 128
MIN_RSA_BITS = 2048
# DSA is obsolete (1024-bit only) and OpenSSH no longer accepts it.
REFUSED_ALGORITHMS = {"ssh-dss": "DSA keys are obsolete; use ssh-keygen -t ed25519"}


class KeyRejected(ValueError):
    """The text is not an acceptable public key; the message says why."""


@dataclass(frozen=True)
class ParsedKey:
    algorithm: str    # e.g. "ssh-ed25519"
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it
    openssh: str      # canonical "ALGORITHM BASE64" (no comment)
    comment: str


def parse_public_key(text: object) -> ParsedKey:
    if not isinstance(text, str) or not text.strip():
        raise KeyRejected("public_key is required: paste the content of your ~/.ssh/id_ed25519.pub")
    text = text.strip()
    if len(text) > MAX_KEY_TEXT:
        raise KeyRejected(f"public_key is too long (at most {MAX_KEY_TEXT} characters)")
    if "PRIVATE KEY" in text:
        raise KeyRejected("this is a PRIVATE key: never share it; paste the .pub file instead")
    if "\n" in text or "\r" in text:
        raise KeyRejected("paste one public key (one line) at a time")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError) as e:
        raise KeyRejected(f"not an OpenSSH public key ({e}); paste a line like 'ssh-ed25519 AAAA... you@laptop'")
    algorithm = key.get_algorithm()
    if algorithm in REFUSED_ALGORITHMS:
        raise KeyRejected(REFUSED_ALGORITHMS[algorithm])
    comment = key.get_comment() or ""
    key.set_comment(None)
    openssh = key.export_public_key("openssh").decode().strip()
    if algorithm == "ssh-rsa":
        bits = load_ssh_public_key(openssh.encode()).key_size
        if bits < MIN_RSA_BITS:
            raise KeyRejected(f"this RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
    return ParsedKey(algorithm=algorithm, fingerprint=key.get_fingerprint("sha256"),
                     openssh=openssh, comment=comment)


def fingerprint_of(key: asyncssh.SSHKey) -> str:
    """The SHA256 fingerprint of a key a client offers (what the registry is keyed on)."""
    return key.get_fingerprint("sha256")


def key_name(name: object, parsed: ParsedKey) -> str:
    """The label shown for a key: the given name, else the key's comment, else its type."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return (parsed.comment or parsed.algorithm)[:MAX_NAME]
    if not isinstance(name, str):
        raise KeyRejected("name must be a string")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise KeyRejected(f"name is too long (at most {MAX_NAME} characters)")
    return name

