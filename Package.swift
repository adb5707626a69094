// swift-tools-version:6.0
import PackageDescription

// C libraries come from Debian (see README); each is a system-library target with no code in it.
let package = Package(
    name: "points-expiry",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "points-expiry", targets: ["points-expiry"]),
        .executable(name: "fake-voucherify", targets: ["fake-voucherify"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibevent", pkgConfig: "libevent", providers: [.apt(["libevent-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "CShims", dependencies: ["CCurl", "CHiredis", "CLibevent"]),

        .target(name: "ExpiryCore"),
        .target(name: "EventLoop", dependencies: ["CLibevent", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Gzip", dependencies: ["CZlib"]),
        .target(name: "WebhookSigning", dependencies: ["ExpiryCore", "CCrypto"]),
        .target(name: "HTTP2Server", dependencies: [
            "EventLoop", "CNghttp2", "CLibevent", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "RedisCache", dependencies: [
            "EventLoop", "ExpiryCore", "CHiredis", "CShims", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "VoucherifyClient", dependencies: [
            "EventLoop", "ExpiryCore", "CCurl", "CShims", "CLibevent", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "PointsExpiryService", dependencies: [
            "ExpiryCore", "EventLoop", "HTTP2Server", "RedisCache", "VoucherifyClient", "Gzip", "WebhookSigning",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "points-expiry", dependencies: [
            "PointsExpiryService", "ExpiryCore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], linkerSettings: [
            // jemalloc replaces glibc malloc process-wide: the request path makes many small,
            // short-lived allocations, and glibc's cost ~12% of hit-path throughput (scripts/bench.sh).
            .linkedLibrary("jemalloc", .when(platforms: [.linux])),
        ]),
        .executableTarget(name: "fake-voucherify", dependencies: [
            "CLibevent", "ExpiryCore", "WebhookSigning", "CCurl", "CShims",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "ExpiryCoreTests", dependencies: ["ExpiryCore"]),
        .testTarget(name: "GzipTests", dependencies: ["Gzip"]),
        .testTarget(name: "WebhookSigningTests", dependencies: ["WebhookSigning", "ExpiryCore"]),
        .testTarget(name: "RedisCacheTests", dependencies: ["RedisCache"]),
        .testTarget(name: "IntegrationTests", dependencies: [
            "PointsExpiryService", "ExpiryCore", "EventLoop", "VoucherifyClient", "RedisCache", "WebhookSigning",
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
