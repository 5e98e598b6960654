#!/bin/sh
# Writes the skeleton of the package in the current directory into DIR: its
# Cargo.toml and Cargo.lock, and a stand-in source file at the path of every
# target `cargo metadata` lists (lib, bins, benches, build script, …).
#
#   sh deploy/docker/skeleton.sh DIR
#
# The Dockerfile builds the dependencies alone on this skeleton, in a layer
# rebuilt only when it changes. Cargo refuses a manifest whose targets are
# missing, so the stand-ins follow the manifest itself, never a list kept
# by hand. This is what cargo-chef's `prepare` and `cook` do; these few
# lines spare building one more tool in the image, and tests/deploy.rs runs
# this same file.
set -eu

out=$1
metadata=$(cargo metadata --no-deps --format-version 1 --offline --locked)

# The paths are JSON strings; read without a JSON parser (the build image
# has none), so a path with a quote or a backslash is refused below.
field() {
  printf '%s\n' "$metadata" | grep -o "\"$1\":\"[^\"]*\"" | sed "s/^\"$1\":\"//; s/\"\$//"
}
root=$(field workspace_root)

mkdir -p "$out"
cp Cargo.toml Cargo.lock "$out/"
field src_path | while read -r path; do
  case $path in
    *\\*) echo "skeleton.sh: cannot stand in for $path" >&2; exit 1 ;;
    "$root"/*) ;;
    *) echo "skeleton.sh: $path is outside $root" >&2; exit 1 ;;
  esac
  target=$out/${path#"$root"/}
  mkdir -p "$(dirname "$target")"
  # Valid as a lib, a bin, a bench, a test or a build script.
  echo '#![allow(dead_code)] fn main() {}' > "$target"
done
