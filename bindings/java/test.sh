#!/usr/bin/env bash
# Builds the Java binding and runs its JUnit 5 suite against the real library and model.
#
#   RILL_LIB_DIR  directory holding librill.so   (default: ../../target/release)
#   RILL_MODEL    the model file                 (default: ../../models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   RILL_JDK      a JDK >= 22, 25 by default     (default: /usr/lib/jvm/temurin-25-jdk-amd64)
#
# Maven comes from Debian's packages if it is missing; plugins and JUnit from Maven Central
# (all pinned in pom.xml), cached in ~/.m2.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RILL_LIB_DIR="${RILL_LIB_DIR:-$here/../../target/release}"
RILL_MODEL="${RILL_MODEL:-$here/../../models/SmolLM2-135M-Instruct.Q4_1.gguf}"
RILL_JDK="${RILL_JDK:-/usr/lib/jvm/temurin-25-jdk-amd64}"
MAVEN_DEB_VERSION="3.8.7-1"

die() {
  echo "test.sh: $*" >&2
  exit 1
}

[[ -x "$RILL_JDK/bin/java" && -x "$RILL_JDK/bin/javac" ]] ||
  die "no JDK at $RILL_JDK: the binding uses the Foreign Function & Memory API (JDK 22+) and builds with --release 25; install Temurin 25 there or set RILL_JDK to a JDK 25"
jdk_major="$("$RILL_JDK/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[[ "$jdk_major" =~ ^[0-9]+$ && "$jdk_major" -ge 25 ]] || die "$RILL_JDK is JDK '$jdk_major'; JDK 25 is needed"
export JAVA_HOME="$RILL_JDK"

[[ -f "$RILL_LIB_DIR/librill.so" ]] || die "no librill.so in $RILL_LIB_DIR (build rill with cargo build --release, or set RILL_LIB_DIR)"
[[ -f "$RILL_MODEL" ]] || die "model not found: $RILL_MODEL (set RILL_MODEL)"
RILL_LIB_DIR="$(cd "$RILL_LIB_DIR" && pwd)"
RILL_MODEL="$(cd "$(dirname "$RILL_MODEL")" && pwd)/$(basename "$RILL_MODEL")"

if ! command -v mvn >/dev/null 2>&1; then
  echo "test.sh: installing maven=$MAVEN_DEB_VERSION from Debian's packages" >&2
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "maven=$MAVEN_DEB_VERSION" >/dev/null
fi

# Maven 3.8.7's Guava calls sun.misc.Unsafe, which JDK 24+ warns about; allow it quietly.
export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow"

cd "$here"
rm -rf target/surefire-reports
status=0
mvn -B -q -Dstyle.color=never test "-Drill.lib=$RILL_LIB_DIR" "-Drill.model=$RILL_MODEL" || status=$?

# -q hides Surefire's summary; print it from the reports.
if compgen -G "target/surefire-reports/*.txt" >/dev/null; then
  grep -h '^Tests run:' target/surefire-reports/*.txt || true
  grep -h '^Tests run:' target/surefire-reports/*.txt | awk -F'[:,] *' '
    { run += $2; fail += $4; err += $6; skip += $8 }
    END {
      printf "Tests run: %d, Failures: %d, Errors: %d, Skipped: %d\n", run, fail, err, skip
      printf "%d passed, %d failed\n", run - fail - err - skip, fail + err
    }'
fi
exit "$status"
