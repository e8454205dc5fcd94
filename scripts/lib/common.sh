# Shared by scripts/test, scripts/demo and the benchmark: install what is
# missing (Debian 12, as root), configure and build. Sourced, not run.

SBX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Every Debian package the project's scripts and tests use, with why.
SBX_PACKAGES=(
  g++ meson ninja-build pkg-config            # the build
  liburing-dev libabsl-dev                    # io_uring, abseil
  libbpf-dev bpftool linux-libc-dev           # kernel dispatch: libbpf, the skeleton, <linux/bpf.h>
  libgtest-dev libgmock-dev libbenchmark-dev  # tests, microbenchmarks
  python3                                     # test summary, helpers
  iproute2 nftables procps strace             # network namespaces, TPROXY, checks
  systemd                                     # systemd-socket-activate, systemd-analyze (unit tests)
  clang libclang-rt-14-dev                    # libFuzzer and ThreadSanitizer builds (build-fuzz, build-tsan)
  clang-format clang-tidy                     # scripts/format-check: C++ layout, faults (.clang-tidy)
  black pyflakes3                             # scripts/format-check: Python layout, faults
  dovecot-core dovecot-pop3d                  # preload_privsep: a real root master, unprivileged login processes
)

sbx_log() { printf '==> %s\n' "$*" >&2; }

# More packages, one a line (# comments allowed), per part: packages.d/*.list
# (real servers for the compatibility suites, plotting for the benchmarks).
sbx_extra_packages() {
  local list
  for list in "$SBX_ROOT"/scripts/lib/packages.d/*.list; do
    [ -f "$list" ] && sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | grep -v '^$'
  done
}

sbx_install_packages() {
  local missing=()
  local pkg
  for pkg in "${SBX_PACKAGES[@]}" $(sbx_extra_packages) "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    return 1
  fi
  sbx_log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || return 1
  # Servers the compatibility suites run (sshd, exim4, haproxy, nginx,
  # apache2, dovecot) must not be started by their packages: the tests start
  # their own instances. policy-rc.d says so to invoke-rc.d, for this install
  # only.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=1
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return "$status"
}

# sbx_configure DIR [meson options...]: configure once (CXX=... in the
# environment chooses the compiler of a new directory).
sbx_configure() {
  local dir="$1"
  shift
  [ -f "$SBX_ROOT/$dir/build.ninja" ] && return 0
  sbx_log "configuring $dir"
  meson setup "$SBX_ROOT/$dir" "$SBX_ROOT" "$@" >"$SBX_ROOT/$dir.setup.log" 2>&1 || {
    cat "$SBX_ROOT/$dir.setup.log" >&2
    return 1
  }
}

# sbx_build DIR [meson options...]: configure once, then build everything.
sbx_build() {
  sbx_configure "$@" || return 1
  sbx_build_targets "$1"
}

# sbx_build_targets DIR [TARGET...]: build only these ninja targets (all
# when none), e.g. the few binaries a sanitizer build's suites run.
sbx_build_targets() {
  local dir="$1"
  shift
  sbx_log "building $dir${*:+ ($*)}"
  ninja -C "$SBX_ROOT/$dir" "$@" >"$SBX_ROOT/$dir.build.log" 2>&1 || {
    tail -50 "$SBX_ROOT/$dir.build.log" >&2
    return 1
  }
}
