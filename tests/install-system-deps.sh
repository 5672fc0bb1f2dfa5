#!/usr/bin/env bash
# What the tests need from the system: Chromium (browser e2e), the OpenSSH client, sshpass and
# sftp-server (SSH gateway), bsdtar (rar extraction in the data service), curl (upload
# benchmark), tmux and screen (offered in every environment), PostgreSQL (the Helm chart's
# external database in tests/helm; the operations tests run the platform on a server of
# their own and back it up with pg_dump; the ledger's tests and benchmark on PostgreSQL), buildah, bubblewrap, debootstrap, rsync and
# docker-registry (image builds and registry pushes).
# Installed from Debian when running as root; otherwise the tests that need them skip and say why.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v ssh >/dev/null || need+=(openssh-client)
command -v sshpass >/dev/null || need+=(sshpass)
# The SSH gateway runs OpenSSH's sftp-server inside environments (sftp and modern scp).
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
command -v unshare >/dev/null || need+=(util-linux)
command -v bsdtar >/dev/null || need+=(libarchive-tools)  # rar extraction (data service)
command -v curl >/dev/null || need+=(curl)                # the benchmarks' baselines
command -v tmux >/dev/null || need+=(tmux)      # long-running work in environments' terminals
command -v screen >/dev/null || need+=(screen)
command -v buildah >/dev/null || need+=(buildah)             # image builds (images service)
command -v bwrap >/dev/null || need+=(bubblewrap)            # the build sandbox
command -v debootstrap >/dev/null || need+=(debootstrap)     # the Debian root of images
command -v rsync >/dev/null || need+=(rsync)                 # root filesystems sharing the base's files
command -v docker-registry >/dev/null || need+=(docker-registry)  # registry pushes (kubernetes runtime)
# the Helm chart's start test and the operations tests (tests/pgcluster.py, pg_dump)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v pg_dump >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "not root: cannot install ${need[*]}; tests that need them will be skipped" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
