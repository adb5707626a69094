#!/usr/bin/env bash
# Regenerates the Swift message types in Sources/APIMessages from the contract in proto-json/.
# Run it after changing a .proto; the output is committed, so builds and CI never run protoc.
# Needs Debian's protobuf-compiler (google/protobuf/*.proto come from the swift-protobuf checkout) and builds protoc-gen-swift from the swift-protobuf version
# Package.swift depends on (so the generated code matches the runtime library).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DEBIAN_PACKAGES=(protobuf-compiler)
ensure_packages
cd "$ROOT"
swift build -c release --product protoc-gen-swift --scratch-path .build-protoc >&2
PLUGIN="$ROOT/.build-protoc/release/protoc-gen-swift"
OUT="$ROOT/Sources/APIMessages"
rm -f "$OUT"/*.pb.swift
protoc --plugin=protoc-gen-swift="$PLUGIN" --swift_opt=Visibility=Public --swift_opt=FileNaming=DropPath \
  --swift_out="$OUT" -I proto-json -I "$ROOT/.build-protoc/checkouts/swift-protobuf/Protos/Sources/SwiftProtobuf" \
  pointsexpiry/v1/points_expiry.proto grpc/health/v1/health.proto
echo "generated: $(cd "$OUT" && ls *.pb.swift | tr '\n' ' ')" >&2
