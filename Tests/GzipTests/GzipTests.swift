import Testing
@testable import Gzip

@Suite struct GzipTests {
    @Test func roundTripsText() throws {
        let text = Array(String(repeating: "points expire at midnight; ", count: 200).utf8)
        let packed = Gzip.compress(text)
        #expect(packed.count < text.count / 10)
        #expect(packed.prefix(2) == [0x1f, 0x8b])
        #expect(try Gzip.decompress(packed, limit: 1 << 20) == text)
    }

    @Test func roundTripsEmpty() throws {
        #expect(try Gzip.decompress(Gzip.compress([]), limit: 10) == [])
    }

    @Test func rejectsOutputOverTheLimit() {
        let bomb = Gzip.compress([UInt8](repeating: 0x41, count: 1 << 20))
        #expect(throws: GzipError.tooLarge(limit: 64 * 1024)) { try Gzip.decompress(bomb, limit: 64 * 1024) }
    }

    @Test func rejectsGarbageTruncationAndTrailingBytes() {
        let packed = Gzip.compress(Array("{\"campaign\":\"c\"}".utf8))
        #expect(throws: GzipError.malformed) { try Gzip.decompress(Array("not gzip".utf8), limit: 1024) }
        #expect(throws: GzipError.malformed) { try Gzip.decompress(Array(packed.dropLast(4)), limit: 1024) }
        #expect(throws: GzipError.malformed) { try Gzip.decompress(packed + [1, 2, 3], limit: 1024) }
    }
}
