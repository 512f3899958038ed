import Foundation

/// The fast path of `GroundTruth.load`: the same grammar on ASCII bytes, without `Character`
/// segmentation or per-line substrings.
///
/// It only ever answers for valid files: non-ASCII text and every malformed line return nil, and
/// the caller re-parses with the `Character`-based parser, which defines the semantics and
/// produces the error (file, line, message). So the two parsers cannot disagree on an error, and
/// on ASCII every rule below mirrors one of the reference parser's: lines end at `\n` with one
/// `\r` of a CRLF and then one more trailing `\r` dropped (`lines(of:)`), a blank line for format
/// detection is all `Character.isWhitespace` (9–13, 32), trimming removes
/// `CharacterSet.whitespaces` (9, 32), fields split at `isWhitespace`, and an integer is what
/// `Int(_:)` accepts (optional sign, digits, no overflow).
enum GroundTruthBytes {
  /// Parsed labels and the resolved format, or nil when the reference parser must decide.
  static func parse(
    _ data: Data, format: GroundTruth.Format, classes: ClassIndex
  ) -> (labels: [String: Int], format: GroundTruth.Format)? {
    data.withUnsafeBytes { raw -> (labels: [String: Int], format: GroundTruth.Format)? in
      let bytes = raw.bindMemory(to: UInt8.self)
      return parse(bytes, format: format, classes: classes)
    }
  }

  private typealias Span = (start: Int, end: Int)

  private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || (byte >= 9 && byte <= 13) }

  private static func parse(
    _ bytes: UnsafeBufferPointer<UInt8>, format: GroundTruth.Format, classes: ClassIndex
  ) -> (labels: [String: Int], format: GroundTruth.Format)? {
    var newlines = 0
    for byte in bytes {
      if byte >= 0x80 { return nil }
      if byte == 0x0A { newlines += 1 }
    }
    let lines = Self.lines(bytes, capacity: newlines + 1)
    guard let firstContent = lines.firstIndex(where: { !isBlank(bytes, $0) }) else { return nil }
    var resolved = format
    if format == .auto {
      let first = lines[firstContent]
      let count = fieldCount(bytes, first)
      if hasPrefix(bytes, first, "ImageId,") {
        resolved = .kaggleCSV
      } else if count == 2 {
        resolved = .caffe
      } else if count == 1 {
        resolved = .perLine
      } else {
        return nil
      }
    }
    var labels = [String: Int](minimumCapacity: lines.count)
    var perLineCount = 0
    var keyBuffer = [UInt8](repeating: 0, count: 32)
    for (position, line) in lines.enumerated() {
      let trimmed = trim(bytes, line)
      if trimmed.start == trimmed.end { continue }
      let key: String
      let label: Int
      switch resolved {
      case .auto:
        return nil
      case .caffe:
        guard let (name, index) = twoFields(bytes, trimmed),
          let value = classIndex(bytes, index, classes: classes)
        else { return nil }
        key = normalizedKey(bytes, name)
        label = value
      case .kaggleCSV:
        if position == firstContent {
          guard hasPrefix(bytes, trimmed, "ImageId,") else { return nil }
          continue
        }
        var comma = trimmed.start
        while comma < trimmed.end && bytes[comma] != UInt8(ascii: ",") { comma += 1 }
        guard comma < trimmed.end, comma > trimmed.start else { return nil }
        var synsetStart = comma + 1
        while synsetStart < trimmed.end && isSpace(bytes[synsetStart]) { synsetStart += 1 }
        var synsetEnd = synsetStart
        while synsetEnd < trimmed.end && !isSpace(bytes[synsetEnd]) { synsetEnd += 1 }
        let synset = (synsetStart, synsetEnd)
        guard isSynset(bytes, synset), let value = classIndex(bytes, synset, classes: classes)
        else { return nil }
        key = normalizedKey(bytes, (trimmed.start, comma))
        label = value
      case .perLine:
        guard let field = singleField(bytes, trimmed),
          let value = classIndex(bytes, field, classes: classes)
        else { return nil }
        perLineCount += 1
        key = validationKey(perLineCount, buffer: &keyBuffer)
        label = value
      }
      // A duplicate is an error whose message names the first line: the reference parser
      // reports it.
      guard labels.updateValue(label, forKey: key) == nil else { return nil }
    }
    return labels.isEmpty ? nil : (labels, resolved)
  }

  /// `lines(of:)` on bytes: split at `\n`; a segment before `\n` loses the `\r` of its CRLF;
  /// then any segment loses one more trailing `\r`; an empty last segment is dropped.
  private static func lines(_ bytes: UnsafeBufferPointer<UInt8>, capacity: Int) -> [Span] {
    var result: [Span] = []
    result.reserveCapacity(capacity)
    var start = 0
    func append(_ end: Int, beforeNewline: Bool) {
      var end = end
      if beforeNewline && end > start && bytes[end - 1] == 0x0D { end -= 1 }
      if end > start && bytes[end - 1] == 0x0D { end -= 1 }
      result.append((start, end))
    }
    for index in 0..<bytes.count where bytes[index] == 0x0A {
      append(index, beforeNewline: true)
      start = index + 1
    }
    append(bytes.count, beforeNewline: false)
    if let last = result.last, last.start == last.end { result.removeLast() }
    return result
  }

  private static func isBlank(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Bool {
    for index in span.start..<span.end where !isSpace(bytes[index]) { return false }
    return true
  }

  /// `CharacterSet.whitespaces` on ASCII: space and tab.
  private static func trim(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Span {
    var (start, end) = span
    while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
    while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
    return (start, end)
  }

  private static func hasPrefix(
    _ bytes: UnsafeBufferPointer<UInt8>, _ span: Span, _ prefix: StaticString
  ) -> Bool {
    let count = prefix.utf8CodeUnitCount
    guard span.end - span.start >= count else { return false }
    let text = prefix.utf8Start
    for offset in 0..<count where bytes[span.start + offset] != text[offset] { return false }
    return true
  }

  /// The fields of `span`, split at whitespace, empty fields omitted, up to `limit + 1` of them.
  private static func fields(
    _ bytes: UnsafeBufferPointer<UInt8>, _ span: Span, limit: Int, into found: inout [Span]
  ) {
    var index = span.start
    while index < span.end && found.count <= limit {
      while index < span.end && isSpace(bytes[index]) { index += 1 }
      guard index < span.end else { break }
      let start = index
      while index < span.end && !isSpace(bytes[index]) { index += 1 }
      found.append((start, index))
    }
  }

  private static func fieldCount(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Int {
    var found: [Span] = []
    fields(bytes, span, limit: 2, into: &found)
    return found.count
  }

  private static func twoFields(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> (
    Span, Span
  )? {
    var index = span.start
    var found: (Span, Span, Int) = ((0, 0), (0, 0), 0)
    while index < span.end {
      while index < span.end && isSpace(bytes[index]) { index += 1 }
      guard index < span.end else { break }
      let start = index
      while index < span.end && !isSpace(bytes[index]) { index += 1 }
      switch found.2 {
      case 0: found.0 = (start, index)
      case 1: found.1 = (start, index)
      default: return nil
      }
      found.2 += 1
    }
    return found.2 == 2 ? (found.0, found.1) : nil
  }

  private static func singleField(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Span? {
    var start = span.start
    while start < span.end && isSpace(bytes[start]) { start += 1 }
    var end = start
    while end < span.end && !isSpace(bytes[end]) { end += 1 }
    guard end > start else { return nil }
    var rest = end
    while rest < span.end && isSpace(bytes[rest]) { rest += 1 }
    return rest == span.end ? (start, end) : nil
  }

  /// `Int(_:)` then the range check, or the synset lookup; nil for anything the reference
  /// parser would reject.
  private static func classIndex(
    _ bytes: UnsafeBufferPointer<UInt8>, _ span: Span, classes: ClassIndex
  ) -> Int? {
    if let value = integer(bytes, span) {
      return value >= 0 && value < classes.count ? value : nil
    }
    return classes.index(ofSynset: string(bytes, span))
  }

  private static func integer(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Int? {
    var index = span.start
    var negative = false
    if index < span.end && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"))
    {
      negative = bytes[index] == UInt8(ascii: "-")
      index += 1
    }
    guard index < span.end else { return nil }
    var value = 0
    while index < span.end {
      let digit = Int(bytes[index]) - 48
      guard digit >= 0 && digit <= 9 else { return nil }
      let (shifted, overflowShift) = value.multipliedReportingOverflow(by: 10)
      let (next, overflowAdd) =
        negative
        ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
      guard !overflowShift && !overflowAdd else { return nil }
      value = next
      index += 1
    }
    return value
  }

  private static func isSynset(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> Bool {
    guard span.end - span.start == 9, bytes[span.start] == UInt8(ascii: "n") else { return false }
    for index in (span.start + 1)..<span.end where bytes[index] < 48 || bytes[index] > 57 {
      return false
    }
    return true
  }

  private static func string(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> String {
    String(decoding: UnsafeBufferPointer(rebasing: bytes[span.start..<span.end]), as: UTF8.self)
  }

  /// `GroundTruth.normalizedKey` on bytes: after the last `/`, without a known image extension.
  private static func normalizedKey(_ bytes: UnsafeBufferPointer<UInt8>, _ span: Span) -> String {
    var start = span.start
    for index in span.start..<span.end where bytes[index] == UInt8(ascii: "/") {
      start = index + 1
    }
    var end = span.end
    var dot = span.end - 1
    while dot >= start && bytes[dot] != UInt8(ascii: ".") { dot -= 1 }
    if dot >= start {
      let suffix = string(bytes, (dot + 1, span.end)).lowercased()
      if imageExtensions.contains(suffix) { end = dot }
    }
    return string(bytes, (start, end))
  }

  /// `GroundTruth.validationKey` without intermediate strings.
  private static func validationKey(_ number: Int, buffer: inout [UInt8]) -> String {
    let prefix: StaticString = "ILSVRC2012_val_"
    var digits = 0
    var rest = number
    repeat {
      digits += 1
      rest /= 10
    } while rest > 0
    let width = max(digits, 8)
    let length = prefix.utf8CodeUnitCount + width
    buffer.growScratch(to: length)
    return buffer.withUnsafeMutableBufferPointer { out -> String in
      let text = prefix.utf8Start
      for offset in 0..<prefix.utf8CodeUnitCount { out[offset] = text[offset] }
      var value = number
      for position in stride(from: length - 1, through: prefix.utf8CodeUnitCount, by: -1) {
        out[position] = UInt8(48 + value % 10)
        value /= 10
      }
      return String(decoding: UnsafeBufferPointer(rebasing: out[0..<length]), as: UTF8.self)
    }
  }
}
