#!/usr/bin/env bash
# Install the Debian packages the build and the tests need, if any is
# missing. Used by .ci/run and by `make test` / `make demo`; a no-op (no
# apt-get at all) when everything is already installed.
set -euo pipefail

packages=(
  busybox-static  # /bin/busybox, statically linked: the tests' workhorse
  gcc             # compiles tests/guests/*.c
  libc6-dev       # headers and libc.a for static guests
  libseccomp-dev  # the sandbox's own seccomp filter
  pkg-config
  python3         # /usr/bin/python3 for tests/host_programs.rs
  bash
  make
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "scripts/deps.sh: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "scripts/deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
