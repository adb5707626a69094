/// Drops HTTP optional whitespace (spaces, tabs) from both ends.
public func trimmingOWS(_ text: Substring) -> Substring {
    let isOWS: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let first = text.firstIndex(where: { !isOWS($0) }), let last = text.lastIndex(where: { !isOWS($0) }) else {
        return text[text.endIndex...]
    }
    return text[first...last]
}

