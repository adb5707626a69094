#!/usr/bin/env bash
# Checks docker/Dockerfile without a Docker engine, against what the package really needs:
#   - the Swift image is at least the swift-tools-version of Package.swift and of every resolved
#     dependency (in .build/checkouts);
#   - the build stage installs exactly the -dev packages Package.swift names (every
#     `.apt([...])` provider, and the package holding lib<name>.so for every `.linkedLibrary`),
#     plus the tools listed in BUILD_TOOLS;
#   - the runtime stage installs exactly the Debian packages of the shared libraries the built
#     binaries link (readelf's NEEDED entries, resolved by ldd, owned per dpkg -S; the Swift
#     runtime is linked statically in the image, so its own libraries' needs count instead),
#     less those every Debian image has (BASE_IMAGE), plus the tools listed in RUNTIME_TOOLS.
# Exits 1 naming every difference. Usage: scripts/check-docker.sh [bin-dir] (default: the debug
# build folder, built here when needed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
DOCKERFILE=docker/Dockerfile
# Needed by the build, but no library: SwiftPM asks pkg-config for the system libraries' flags.
BUILD_TOOLS=(pkg-config)
# Needed at run time, but no linked library: TLS roots, time zones, the health checks' client.
RUNTIME_TOOLS=(ca-certificates tzdata curl)
# In debian:bookworm-slim already (glibc and libgcc, which everything there links).
BASE_IMAGE=(libc6 libgcc-s1)

if [ $# -ge 1 ]; then
  BIN=$1
else
  swift build --product points-expiry >/dev/null
  swift build --product fake-voucherify >/dev/null
  BIN="$(swift build --show-bin-path)"
fi
BINARIES=("$BIN/points-expiry" "$BIN/fake-voucherify")
problems=()

# The packages of `apt-get install` in stage $1 (1 = first FROM), one a line, sorted.
stage_packages() {
  # (No install in the stage is an empty list, not a failure.)
  awk -v want="$1" '/^FROM /{ stage++ } stage == want' "$DOCKERFILE" \
    | sed -e ':join' -e '/\\$/{ N; s/\\\n/ /; b join' -e '}' \
    | { grep 'apt-get install' || true; } \
    | sed -e 's/.*apt-get install//' -e 's/&&.*//' \
    | tr ' ' '\n' | { grep -v -e '^-' -e '^$' || true; } | sort -u
}

# The Debian package that owns library file $1 (trying the merged-/usr twin of the path too).
owning_package() {
  local path candidates=("$1" "$(readlink -f "$1")")
  for path in "${candidates[@]}"; do
    case "$path" in /usr/lib/*) candidates+=("${path#/usr}") ;; /lib/*) candidates+=("/usr$path") ;; esac
  done
  for path in "${candidates[@]}"; do
    dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1 && return 0
  done
  return 1
}

# difference WHAT EXPECTED_FILE LISTED_FILE: records what is missing from and extra in the list.
difference() {
  local missing extra
  missing="$(comm -23 "$2" "$3" | tr '\n' ' ')"
  extra="$(comm -13 "$2" "$3" | tr '\n' ' ')"
  [ -n "$missing" ] && problems+=("$1 lacks: $missing")
  [ -n "$extra" ] && problems+=("$1 has packages nothing needs: $extra")
  return 0
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-docker.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# 1. The toolchain: FROM swift:X.Y[...] AS build must be at least the swift-tools-version the
# package and each resolved dependency need (for a dependency with version-specific manifests,
# Package@swift-X.swift, the oldest of them).
tools_version() { sed -n 's|^// *swift-tools-version: *\([0-9]*\.[0-9]*\).*|\1|p' "$1"; }
needed_tools="$(tools_version Package.swift)" needed_by="Package.swift"
for checkout in .build/checkouts/*/; do
  [ -f "$checkout/Package.swift" ] || continue
  oldest="$(for manifest in "$checkout"/Package*.swift; do tools_version "$manifest"; done | sort -V | head -n 1)"
  if [ "$(printf '%s\n%s\n' "$needed_tools" "$oldest" | sort -V | tail -n 1)" != "$needed_tools" ]; then
    needed_tools=$oldest needed_by="$(basename "$checkout")"
  fi
done
image="$(awk '/^FROM swift:/ { print $2; exit }' "$DOCKERFILE" | sed -n 's|^swift:\([0-9]*\.[0-9]*\).*|\1|p')"
if [ -z "$image" ]; then
  problems+=("$DOCKERFILE: the build stage is not FROM swift:X.Y-…")
elif [ "$(printf '%s\n%s\n' "$needed_tools" "$image" | sort -V | head -n 1)" != "$needed_tools" ]; then
  problems+=("$DOCKERFILE builds with swift:$image, but $needed_by needs swift-tools-version $needed_tools")
fi

# 2. Build stage against Package.swift.
grep -o '\.apt(\[[^]]*\])' Package.swift | grep -o '"[^"]*"' | tr -d '"' > "$WORK/build.needed"
for library in $(grep -o 'linkedLibrary("[^"]*"' Package.swift | sed 's/.*("//; s/"$//'); do
  file="$( (ls /usr/lib/*/lib"$library".so /usr/lib/lib"$library".so 2>/dev/null || true) | head -n 1)"
  if [ -z "$file" ] || ! owning_package "$file" >> "$WORK/build.needed"; then
    problems+=("no installed Debian package holds lib$library.so (Package.swift links $library; install its -dev package)")
  fi
done
printf '%s\n' "${BUILD_TOOLS[@]}" >> "$WORK/build.needed"
sort -u "$WORK/build.needed" > "$WORK/build.expected"
stage_packages 1 > "$WORK/build.listed"
difference "$DOCKERFILE's build stage" "$WORK/build.expected" "$WORK/build.listed"

# 3. Runtime stage against the binaries' linked libraries.
toolchain_lib="$(cd "$(dirname "$(readlink -f "$(command -v swift)")")/../lib" && pwd)"
# needed_files FILE: the resolved path of each of FILE's direct (NEEDED) libraries, one a line;
# "?NAME" for one ldd cannot resolve.
needed_files() {
  local name resolved
  for name in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case "$name" in
      ld-linux*) resolved="$(ldd "$1" | awk -v name="$name" 'index($1, name) { print $1 }' | head -n 1)" ;;
      *) resolved="$(ldd "$1" | awk -v name="$name" '$1 == name && $3 ~ /^\// { print $3 }' | head -n 1)" ;;
    esac
    echo "${resolved:-?$name}"
  done
}
: > "$WORK/runtime.needed"
for binary in "${BINARIES[@]}"; do
  [ -x "$binary" ] || { echo "check-docker: $binary is not built" >&2; exit 2; }
  queue=("$binary") seen=()
  while [ ${#queue[@]} -gt 0 ]; do
    file=${queue[0]} queue=("${queue[@]:1}")
    for library in $(needed_files "$file"); do
      case "$library" in
        "?"*)
          problems+=("$(basename "$file") needs ${library#?}, which ldd does not resolve here") ;;
        "$toolchain_lib"/*)
          # The Swift runtime, linked statically into the image's binaries: what it needs counts.
          [[ " ${seen[*]} " == *" $library "* ]] || { seen+=("$library"); queue+=("$library"); } ;;
        *)
          owning_package "$library" >> "$WORK/runtime.needed" \
            || problems+=("no Debian package owns $library ($(basename "$binary") links it)") ;;
      esac
    done
  done
done
printf '%s\n' "${RUNTIME_TOOLS[@]}" >> "$WORK/runtime.needed"
sort -u "$WORK/runtime.needed" | { grep -vxF -f <(printf '%s\n' "${BASE_IMAGE[@]}") || true; } > "$WORK/runtime.expected"
# The runtime stage is the first after the build stage that installs packages (the final stages
# only copy a binary onto it).
: > "$WORK/runtime.listed"
for ((stage = 2; stage <= $(grep -c '^FROM ' "$DOCKERFILE"); stage++)); do
  stage_packages "$stage" > "$WORK/runtime.listed"
  [ -s "$WORK/runtime.listed" ] && break
done
difference "$DOCKERFILE's runtime stage" "$WORK/runtime.expected" "$WORK/runtime.listed"

if [ ${#problems[@]} -gt 0 ]; then
  echo "check-docker: $DOCKERFILE does not match what the package needs:" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  echo "  (build stage: Package.swift's .apt providers and linked libraries, plus ${BUILD_TOOLS[*]};" \
       "runtime stage: the Debian packages of the libraries the binaries link, plus ${RUNTIME_TOOLS[*]})" >&2
  exit 1
fi
echo "check-docker: $DOCKERFILE matches Package.swift and the binaries' libraries ($(wc -l < "$WORK/build.listed") build, $(wc -l < "$WORK/runtime.listed") runtime packages)"
