/// What `points-expiry --version` prints and `points_expiry_build_info` reports.
public enum BuildInfo {
    /// The release: the contract version it serves, and this implementation's patch level.
    public static let version = "1.1.0"
}
