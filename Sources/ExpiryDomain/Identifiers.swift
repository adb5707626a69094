/// Longest campaign, member or event id accepted, in UTF-8 bytes: far above real ids and card
/// codes, small enough to keep cache keys and upstream URLs bounded.
public let maxIdentifierBytes = 512
