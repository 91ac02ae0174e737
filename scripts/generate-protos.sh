#!/usr/bin/env bash
# Regenerates the Swift code for Protos/*.proto (committed; the build does not run this).
# Needs protoc (Debian: protobuf-compiler) and swift-protobuf's protoc-gen-swift of the
# version Package.swift names:
#   git clone --branch 1.39.0 https://github.com/apple/swift-protobuf /tmp/spb
#   (cd /tmp/spb && swift build -c release --product protoc-gen-swift)
#   PROTOC_GEN_SWIFT=/tmp/spb/.build/release/protoc-gen-swift scripts/generate-protos.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
[ -x "$plugin" ] || { echo "generate-protos.sh: protoc-gen-swift not found (set PROTOC_GEN_SWIFT)" >&2; exit 2; }
protoc --plugin=protoc-gen-swift="$plugin" --proto_path=Protos --swift_opt=Visibility=Internal \
  --swift_out=Sources/TandemTensorBoard Protos/tensorboard_event.proto
echo "wrote Sources/TandemTensorBoard/tensorboard_event.pb.swift"
