// swift-tools-version:6.0
import PackageDescription

// The tree is the architecture (see README, "Modules"):
//   generic adapters (EventLoop, HTTPServer, RedisClient, HTTPClient) know nothing of points;
//   Codecs, ExpiryDomain and RPC are pure; Voucherify speaks the upstream API over HTTPClient;
//   PointsExpiryServer composes them; the executables only parse arguments and start it.
// C libraries come from Debian; each is a system-library target with no code in it, imported
// `internal` by exactly the adapters that wrap it.
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let csv = Target.Dependency.product(name: "CSV", package: "CSV.swift")
let protobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

let package = Package(
    name: "points-expiry",
    products: [
        .executable(name: "points-expiry", targets: ["points-expiry"]),
        .executable(name: "fake-voucherify", targets: ["fake-voucherify"]),
        .executable(name: "bench-export", targets: ["bench-export"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/yaslab/CSV.swift", from: "2.5.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries (Debian packages) and the only C we write.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibevent", pkgConfig: "libevent", providers: [.apt(["libevent-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // No pkg-config file in Debian's package: the module map links the library by name.
        .systemLibrary(name: "CHttpParser", providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CSSL", pkgConfig: "libssl", providers: [.apt(["libssl-dev"])]),
        // libevent's OpenSSL bufferevents (TLS on the service port); a library of its own in Debian.
        .systemLibrary(name: "CLibeventOpenSSL", pkgConfig: "libevent_openssl", providers: [.apt(["libevent-dev"])]),
        .target(name: "CShims", dependencies: ["CCurl", "CHiredis", "CLibevent"]),

        // Pure building blocks: no I/O.
        .target(name: "Codecs"),
        .target(name: "ExpiryDomain", dependencies: ["Codecs"]),
        // The contract's messages, generated from proto-json/ by scripts/generate-proto.sh (committed).
        .target(name: "APIMessages", dependencies: [protobuf]),

        // Generic adapters: each wraps one C library on the event loop and knows nothing of points.
        .target(name: "EventLoop", dependencies: ["CLibevent"]),
        .target(name: "Gzip", dependencies: ["CZlib"]),
        .target(name: "HTTPServer", dependencies: ["EventLoop", "CNghttp2", "CHttpParser", "CLibevent", "CLibeventOpenSSL", "CSSL", "CCrypto", logging]),
        .target(name: "RedisClient", dependencies: ["EventLoop", "CHiredis", "CShims", logging]),
        .target(name: "HTTPClient", dependencies: ["EventLoop", "CCurl", "CShims"]),

        // Wire protocols (Connect, gRPC, gRPC-Web; JSON and proto) over the HTTP server's handler interface.
        .target(name: "RPC", dependencies: ["HTTPServer", "EventLoop", "Codecs", "Gzip", protobuf, logging]),
        // The Voucherify API over the HTTP client, and its webhook format and signatures.
        .target(name: "Voucherify", dependencies: ["HTTPClient", "EventLoop", "Codecs", "ExpiryDomain", "CCrypto", logging]),

        // The application: one file per RPC, MemberAnswers, the Redis layout, webhook, health, metrics.
        .target(name: "PointsExpiryServer", dependencies: [
            "EventLoop", "HTTPServer", "RedisClient", "HTTPClient", "RPC", "Voucherify", "ExpiryDomain", "Codecs", "APIMessages", protobuf, logging, prometheus,
        ]),
        // The cache-warming job: a client of the running service (`points-expiry warm`).
        .target(name: "WarmJob", dependencies: ["EventLoop", "HTTPClient", "Codecs", csv]),
        .executableTarget(name: "points-expiry", dependencies: ["PointsExpiryServer", "WarmJob", "HTTPClient", logging, argumentParser], linkerSettings: [
            // jemalloc replaces glibc malloc process-wide: the request path makes many small,
            // short-lived allocations, and glibc's cost ~12% of hit-path throughput (scripts/bench.sh).
            .linkedLibrary("jemalloc", .when(platforms: [.linux])),
        ]),
        .executableTarget(name: "fake-voucherify", dependencies: [
            "CLibevent", "EventLoop", "HTTPClient", "Codecs", "ExpiryDomain", "Voucherify", argumentParser,
        ]),
        // Times CampaignAggregator on a generated 1,000,000-row export (scripts/bench-export.sh).
        .executableTarget(name: "bench-export", dependencies: ["ExpiryDomain", "Codecs", csv]),

        // Helpers the unit-test targets share; nothing else depends on it.
        .target(name: "TestSupport", dependencies: ["Codecs", "ExpiryDomain", "RPC", logging], path: "Tests/TestSupport"),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "TestSupport"]),
        .testTarget(name: "ExpiryDomainTests", dependencies: ["ExpiryDomain", "Codecs", "TestSupport"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop"]),
        .testTarget(name: "GzipTests", dependencies: ["Gzip"]),
        .testTarget(name: "WarmJobTests", dependencies: ["WarmJob", "Codecs", "HTTPClient"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "HTTPClient", "EventLoop", "TestSupport", logging]),
        .testTarget(name: "RedisClientTests", dependencies: ["RedisClient", "EventLoop", logging]),
        .testTarget(name: "RPCTests", dependencies: ["RPC", "HTTPServer", "EventLoop", "Codecs", "Gzip", "TestSupport", protobuf, logging]),
        .testTarget(name: "VoucherifyTests", dependencies: ["Voucherify", "ExpiryDomain", "Codecs", "TestSupport"]),
        .testTarget(name: "PointsExpiryServerTests", dependencies: [
            "PointsExpiryServer", "EventLoop", "ExpiryDomain", "Codecs", "RPC", "HTTPServer", "Voucherify", "TestSupport", "APIMessages", protobuf,
        ]),
        .testTarget(name: "IntegrationTests", dependencies: [
            "PointsExpiryServer", "ExpiryDomain", "Codecs", "EventLoop", "HTTPClient", "RedisClient", "Voucherify", "TestSupport", logging,
        ]),
    ],
    swiftLanguageModes: [.v6]
)
