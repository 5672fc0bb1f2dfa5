"""Parsing the public keys users paste into the SSH page."""

from __future__ import annotations

import asyncssh
import pytest

from gemhub.services.ssh.keys import KeyRejected, key_name, parse_public_key


def public_text(alg: str, comment: str = "me@laptop", **kw) -> str:
    key = asyncssh.generate_private_key(alg, comment=comment, **kw)
    return key.export_public_key("openssh").decode().strip()


@pytest.mark.parametrize("alg,kw", [("ssh-ed25519", {}), ("ecdsa-sha2-nistp256", {}),
                                    ("ssh-rsa", {"key_size": 2048})])
def test_openssh_public_keys_are_accepted(alg, kw):
    text = public_text(alg, **kw)
    parsed = parse_public_key("  " + text + "\n")
    assert parsed.algorithm == alg
    assert parsed.comment == "me@laptop"
    assert parsed.fingerprint.startswith("SHA256:")
    assert parsed.openssh == text.rsplit(" ", 1)[0]  # the comment is kept apart
    assert parse_public_key(parsed.openssh).fingerprint == parsed.fingerprint


@pytest.mark.parametrize("text,needle", [
    ("", "required"), ("   ", "required"), (None, "required"), (42, "required"),
    ("garbage", "not an OpenSSH public key"),
    ("ssh-ed25519 AAAAnotbase64!!", "not an OpenSSH public key"),
    ("x" * 20000, "too long"),
])
def test_garbage_is_rejected_with_a_reason(text, needle):
    with pytest.raises(KeyRejected, match=needle):
        parse_public_key(text)


def test_private_key_is_refused_without_echoing_it():
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with pytest.raises(KeyRejected) as e:
        parse_public_key(private)
    assert "PRIVATE key" in str(e.value) and private[40:80] not in str(e.value)


def test_two_keys_at_once_are_refused():
    with pytest.raises(KeyRejected, match="one public key"):
        parse_public_key(public_text("ssh-ed25519") + "\n" + public_text("ssh-ed25519"))


def test_short_rsa_keys_are_refused():
    with pytest.raises(KeyRejected, match="1024 bits"):
        parse_public_key(public_text("ssh-rsa", key_size=1024))


def test_key_name_defaults_to_comment_then_algorithm():
    parsed = parse_public_key(public_text("ssh-ed25519", comment="work"))
    assert key_name(None, parsed) == "work"
    assert key_name("  laptop ", parsed) == "laptop"
    bare = parse_public_key(parsed.openssh)
    assert key_name("", bare) == "ssh-ed25519"
    with pytest.raises(KeyRejected, match="too long"):
        key_name("n" * 129, parsed)
    with pytest.raises(KeyRejected, match="string"):
        key_name(5, parsed)
