// bench-export: how fast, and in how much memory, CampaignAggregator turns a large
// points-expiration export into a campaign aggregate.
//
// It generates a deterministic export the way Voucherify's download arrives (BOM, CRLF,
// human-readable header, some quoted fields, ~10% EXPIRED rows, ~5% never-expiring buckets,
// dates over two years, 5 buckets per card) chunk by chunk in 64 KiB pieces, never the whole
// file, and feeds each chunk to the aggregator. Only the aggregator's time is counted, and its
// memory as the growth of the process's peak RSS (VmHWM). The figures are then checked against
// what the generator knows it wrote.
//
// References over the same bytes: counting line ends (the floor any reader stays above), and
// CSV.swift (the package's other CSV reader) parsing a 100,000-row sample, per row.
//
// Usage: bench-export [ROWS] (default 1,000,000). Exits 1 when a figure is wrong, or when
// 1,000,000 rows or more take 10 s or more or grow the peak RSS by 64 MiB or more.
import CSV
import Codecs
import ExpiryDomain
import Foundation

let chunkSize = 64 * 1024
let bucketsPerCard = 5
let timeLimitSeconds = 10.0
let memoryLimitMiB = 64.0

/// A stateless mix of a row number into 64 random-looking bits (the SplitMix64 finaliser).
func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The export's rows, written on demand; it also tallies what the aggregate must say.
struct ExportGenerator {
    let rows: Int
    let cards: Int
    private(set) var nextRow = 0
    private(set) var activePoints: Int64 = 0
    private(set) var counted = 0
    private(set) var skipped = 0
    private(set) var cardsWithPoints = 0
    private var cardHasPoints: [Bool]
    private let dates: [[UInt8]]
    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)

    init(rows: Int) {
        self.rows = rows
        cards = max(1, rows / bucketsPerCard)
        cardHasPoints = [Bool](repeating: false, count: cards)
        let firstDay = CalendarDate(year: 2026, month: 1, day: 1)?.daysSince1970 ?? 0
        dates = (0..<730).map { offset in
            var iso: [UInt8] = []
            CalendarDate(daysSince1970: firstDay + offset).appendISO(to: &iso)
            return iso
        }
    }

    var done: Bool { nextRow > rows }

    /// Appends the header (first call) or the next row.
    mutating func appendNext(to out: inout [UInt8]) {
        defer { nextRow += 1 }
        guard nextRow > 0 else {
            out.append(contentsOf: [0xEF, 0xBB, 0xBF])
            out.append(contentsOf: "\"Id\",\"Campaign ID\",\"Voucher ID\",\"Points\",\"Status\",\"Expires At\"\r\n".utf8)
            return
        }
        let row = nextRow - 1
        let card = row % cards
        let bits = mix(UInt64(row))
        let expired = bits % 10 == 0
        let neverExpires = (bits >> 8) % 20 == 0
        let points = Int64((bits >> 16) % 500)
        let quoted = (bits >> 32) % 4 == 0

        out.append(contentsOf: "lopb_".utf8)
        appendToken(mix(UInt64(row) ^ 0x5555), to: &out)
        out.append(contentsOf: ",\"camp_bench\",".utf8)
        if quoted { out.append(UInt8(ascii: "\"")) }
        out.append(contentsOf: "v_".utf8)
        appendToken(mix(UInt64(card) ^ 0xAAAA), to: &out)
        if quoted { out.append(UInt8(ascii: "\"")) }
        out.append(UInt8(ascii: ","))
        appendDecimal(UInt64(points), to: &out)
        out.append(contentsOf: (expired ? ",EXPIRED," : quoted ? ",\"ACTIVE\"," : ",ACTIVE,").utf8)
        if !neverExpires { out.append(contentsOf: dates[Int((bits >> 40) % UInt64(dates.count))]) }
        out.append(contentsOf: "\r\n".utf8)

        if expired {
            skipped += 1
        } else {
            counted += 1
            activePoints += points
            if points > 0, !cardHasPoints[card] {
                cardHasPoints[card] = true
                cardsWithPoints += 1
            }
        }
    }

    /// 24 base-36 characters from two mixes of `seed`.
    private func appendToken(_ seed: UInt64, to out: inout [UInt8]) {
        for half in [seed, mix(seed)] {
            var rest = half
            for _ in 0..<12 {
                out.append(Self.alphabet[Int(rest % 36)])
                rest /= 36
            }
        }
    }
}

/// Generates an export of `rows` rows and hands it to `body` in `chunkSize` pieces (the last
/// one shorter); returns the generator with its tallies.
func generateExport(rows: Int, _ body: (UnsafeRawBufferPointer) -> Void) -> ExportGenerator {
    var generator = ExportGenerator(rows: rows)
    var pending: [UInt8] = []
    pending.reserveCapacity(chunkSize + 256)
    while !generator.done {
        generator.appendNext(to: &pending)
        if pending.count >= chunkSize {
            pending.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<chunkSize])) }
            pending.removeFirst(chunkSize)
        }
    }
    if !pending.isEmpty { pending.withUnsafeBytes { body($0) } }
    return generator
}

/// The process's peak resident set so far, in KiB (VmHWM in /proc/self/status).
func peakRSSKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kib
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func format(_ value: Double, _ digits: Int = 3) -> String {
    String(format: "%.\(digits)f", value)
}

let rows = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 1_000_000
guard rows > 0 else {
    print("usage: bench-export [ROWS]")
    exit(2)
}
let clock = ContinuousClock()
var failures: [String] = []

// --- the aggregator -----------------------------------------------------------------------------
let peakBefore = peakRSSKiB()
var aggregator = CampaignAggregator()
var aggregating = Duration.zero
var exportBytes = 0
var feedError: ExportFormatError?
let generator = generateExport(rows: rows) { chunk in
    exportBytes += chunk.count
    let start = clock.now
    do throws(ExportFormatError) { try aggregator.feed(chunk) } catch { feedError = feedError ?? error }
    aggregating += clock.now - start
}
let finishStart = clock.now
let aggregateResult = Result { () throws(ExportFormatError) in try aggregator.finish() }
let finishing = clock.now - finishStart
aggregating += finishing
let growthMiB = Double(peakRSSKiB() - peakBefore) / 1024

let aggregateSeconds = seconds(aggregating)
print("bench-export: \(rows) rows, \(format(Double(exportBytes) / 1_048_576, 1)) MiB in \(chunkSize / 1024) KiB chunks,"
    + " \(generator.cards) cards")
print("aggregator:   \(format(aggregateSeconds)) s, \(Int(Double(rows) / aggregateSeconds)) rows/s,"
    + " peak RSS growth \(format(growthMiB, 1)) MiB; of it the final finish() (one call; the service runs it off its loops) \(format(seconds(finishing))) s")

switch (feedError.map { Result<CampaignAggregate, ExportFormatError>.failure($0) } ?? aggregateResult) {
case .failure(let error):
    failures.append("the aggregator failed: \(error)")
case .success(let campaign):
    let expected = ExportRowCounts(total: Int64(rows), counted: Int64(generator.counted), skipped: Int64(generator.skipped))
    if campaign.rows != expected { failures.append("rows \(campaign.rows), expected \(expected)") }
    if campaign.activePoints != generator.activePoints {
        failures.append("active points \(campaign.activePoints), expected \(generator.activePoints)")
    }
    if campaign.cards != Int64(generator.cardsWithPoints) { failures.append("cards \(campaign.cards), expected \(generator.cardsWithPoints)") }
    let everything = campaign.range(from: nil, to: nil)
    print("aggregate:    \(campaign.activePoints) active points, \(campaign.cards) cards, \(campaign.days.count) days,"
        + " \(everything.expiringCards) cards with expiring points, \(campaign.encoded().count) bytes encoded")
}

// --- reference: counting line ends over the same bytes ------------------------------------------
var counting = Duration.zero
var lineEnds = 0
_ = generateExport(rows: rows) { chunk in
    let start = clock.now
    var count = 0
    for byte in chunk where byte == UInt8(ascii: "\n") { count += 1 }
    lineEnds += count
    counting += clock.now - start
}
let countingSeconds = seconds(counting)
if lineEnds != rows + 1 { failures.append("counted \(lineEnds) line ends for \(rows) rows and a header") }
print("reference:    counting line ends \(format(countingSeconds)) s, \(Int(Double(rows) / countingSeconds)) rows/s;"
    + " the aggregator takes \(format(aggregateSeconds / countingSeconds, 1))x as long")

// --- reference: CSV.swift parsing a sample -------------------------------------------------------
let sampleRows = min(rows, 100_000)
var sample: [UInt8] = []
var sampleGenerator = ExportGenerator(rows: sampleRows)
while !sampleGenerator.done { sampleGenerator.appendNext(to: &sample) }
let csvStart = clock.now
var parsedRows = 0
do {
    let reader = try CSVReader(stream: InputStream(data: Data(sample)), hasHeaderRow: true)
    while reader.next() != nil { parsedRows += 1 }
    if let error = reader.error { failures.append("CSV.swift failed: \(error)") }
} catch {
    failures.append("CSV.swift failed: \(error)")
}
let csvSeconds = seconds(clock.now - csvStart)
if parsedRows != sampleRows { failures.append("CSV.swift read \(parsedRows) rows of \(sampleRows)") }
let csvRowsPerSecond = Double(sampleRows) / csvSeconds
print("reference:    CSV.swift parsing \(sampleRows) rows \(format(csvSeconds)) s, \(Int(csvRowsPerSecond)) rows/s;"
    + " the aggregator is \(format(Double(rows) / aggregateSeconds / csvRowsPerSecond, 1))x as fast")

// --- verdict ------------------------------------------------------------------------------------
if rows >= 1_000_000 {
    let timeMet = aggregateSeconds < timeLimitSeconds
    let memoryMet = growthMiB < memoryLimitMiB
    print("targets:      \(format(aggregateSeconds)) s (< \(Int(timeLimitSeconds)) s: \(timeMet ? "met" : "NOT met")),"
        + " \(format(growthMiB, 1)) MiB (< \(Int(memoryLimitMiB)) MiB: \(memoryMet ? "met" : "NOT met"))")
    if !timeMet { failures.append("1M rows took \(format(aggregateSeconds)) s") }
    if !memoryMet { failures.append("peak RSS grew by \(format(growthMiB, 1)) MiB") }
}
for failure in failures { print("bench-export: FAILED: \(failure)") }
exit(failures.isEmpty ? 0 : 1)
