#!/usr/bin/env bash
# A ~500 MB image pulled with skopeo directly from a local docker-registry, then through wharf cold and warm.
# Usage: bench/oci/run.sh [path to a release wharf binary]. Needs skopeo, docker-registry, python3, ~3 GB in /tmp.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wharf="${1:-$here/../../target/release/wharf}"
work="$(mktemp -d)"
trap 'kill "${reg_pid:-}" "${wharf_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
python3 "$here/make_image.py" layout 5 104857600 >/dev/null
cat > registry.yml <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:45100}
YAML
cat > wharf.yaml <<YAML
listen: "127.0.0.1:45200"
storage: {path: $work/wharf-data}
log: {access_log: false, level: warn}
repositories:
  images: {format: oci, upstreams: {local: "http://127.0.0.1:45100/"}}
YAML
docker-registry serve registry.yml & reg_pid=$!
"$wharf" serve --config wharf.yaml & wharf_pid=$!
sleep 1
skopeo copy --quiet --preserve-digests --dest-tls-verify=false oci:layout:1 docker://127.0.0.1:45100/big/app:1
pull() {
  rm -rf out
  local start end
  start=$(date +%s.%N)
  skopeo copy --quiet --src-tls-verify=false "docker://$1" dir:out
  end=$(date +%s.%N)
  printf '%-28s %6.2f s\n' "$2" "$(echo "$end - $start" | bc)"
}
pull 127.0.0.1:45100/big/app:1 "direct from the registry"
pull 127.0.0.1:45100/big/app:1 "direct again"
pull 127.0.0.1:45200/local/big/app:1 "through wharf, cold"
pull 127.0.0.1:45200/local/big/app:1 "through wharf, warm"
