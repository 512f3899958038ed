import Foundation

/// A hand-written codec for `predictions.jsonl` lines.
///
/// Foundation's JSON coders cost 100–200 µs per record, which a 50,000-image run pays on
/// every line written and every line read back by resume and merge. The format is fixed
/// (sorted keys, no whitespace), so writing is string building and reading is a small
/// parser; any line the fast parser rejects goes through `JSONDecoder`, which gives the
/// detailed error.
enum RecordCoding {
  /// Appends one record as compact JSON with sorted keys, without the newline.
  static func encode(_ record: ImageRecord, into out: inout [UInt8]) {
    out.append(UInt8(ascii: "{"))
    var first = true
    func key(_ name: String) {
      if !first { out.append(UInt8(ascii: ",")) }
      first = false
      appendString(name, into: &out)
      out.append(UInt8(ascii: ":"))
    }
    if let engines = record.engines {
      key("engines")
      out.append(UInt8(ascii: "{"))
      for (i, name) in engines.keys.sorted().enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        let prediction = engines[name]!
        appendString(name, into: &out)
        out.append(contentsOf: Array(#":{"scores":"#.utf8))
        appendArray(prediction.scores.map(formatDouble), into: &out)
        out.append(contentsOf: Array(#","top5":"#.utf8))
        appendArray(prediction.top5.map(String.init), into: &out)
        out.append(UInt8(ascii: "}"))
      }
      out.append(UInt8(ascii: "}"))
    }
    key("index")
    out.append(contentsOf: Array(String(record.index).utf8))
    key("key")
    appendString(record.key, into: &out)
    if let label = record.label {
      key("label")
      out.append(contentsOf: Array(String(label).utf8))
    }
    if let paired = record.paired {
      key("paired")
      out.append(UInt8(ascii: "{"))
      for (i, name) in paired.keys.sorted().enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        let similarity = paired[name]!
        appendString(name, into: &out)
        out.append(contentsOf: Array(#":{"cosine":"#.utf8))
        out.append(contentsOf: Array(formatDouble(similarity.cosine).utf8))
        out.append(contentsOf: Array(#","kl":"#.utf8))
        out.append(contentsOf: Array(formatDouble(similarity.kl).utf8))
        out.append(UInt8(ascii: "}"))
      }
      out.append(UInt8(ascii: "}"))
    }
    if let skip = record.skip {
      key("skip")
      out.append(contentsOf: Array(#"{"detail":"#.utf8))
      appendString(skip.detail, into: &out)
      out.append(contentsOf: Array(#","reason":"#.utf8))
      appendString(skip.reason, into: &out)
      out.append(UInt8(ascii: "}"))
    }
    out.append(UInt8(ascii: "}"))
  }

  /// Shortest round-trip decimal, as JSON: Swift's `description`, which is valid JSON for
  /// finite values (records never hold non-finite ones: those images are skipped).
  static func formatDouble(_ value: Double) -> String {
    var text = value.description
    if text.hasSuffix(".0") { text.removeLast(2) }
    return text
  }

  private static func appendArray(_ items: [String], into out: inout [UInt8]) {
    out.append(UInt8(ascii: "["))
    for (i, item) in items.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      out.append(contentsOf: Array(item.utf8))
    }
    out.append(UInt8(ascii: "]"))
  }

  private static func appendString(_ text: String, into out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
      case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
      case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
      case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
      case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
      case 0..<0x20:
        out.append(contentsOf: Array(String(format: "\\u%04x", byte).utf8))
      default: out.append(byte)
      }
    }
    out.append(UInt8(ascii: "\""))
  }

  /// Parses one line; nil when the line is not in the expected shape (the caller then asks
  /// `JSONDecoder`, for a precise error or for a valid line written differently).
  static func decode(_ line: UnsafeBufferPointer<UInt8>) -> ImageRecord? {
    var parser = Parser(bytes: line)
    guard case .object(let fields)? = parser.value(), parser.atEnd else { return nil }
    var record = ImageRecord(index: -1, key: "", label: nil)
    var sawIndex = false
    var sawKey = false
    for (name, value) in fields {
      switch name {
      case "index":
        guard case .number(let text) = value, let index = Int(text) else { return nil }
        record.index = index
        sawIndex = true
      case "key":
        guard case .string(let key) = value else { return nil }
        record.key = key
        sawKey = true
      case "label":
        if case .null = value { continue }
        guard case .number(let text) = value, let label = Int(text) else { return nil }
        record.label = label
      case "engines":
        guard case .object(let engines) = value else { return nil }
        var predictions = [String: EnginePrediction]()
        for (engine, entry) in engines {
          guard case .object(let parts) = entry else { return nil }
          var top5: [Int]?
          var scores: [Double]?
          for (part, item) in parts {
            guard case .array(let items) = item else { return nil }
            switch part {
            case "top5":
              top5 = items.compactMap { if case .number(let t) = $0 { Int(t) } else { nil } }
            case "scores":
              scores = items.compactMap { if case .number(let t) = $0 { Double(t) } else { nil } }
            default: return nil
            }
            if (part == "top5" ? top5?.count : scores?.count) != items.count { return nil }
          }
          guard let top5, let scores else { return nil }
          predictions[engine] = EnginePrediction(top5: top5, scores: scores)
        }
        record.engines = predictions
      case "paired":
        guard case .object(let pairs) = value else { return nil }
        var paired = [String: LogitSimilarity]()
        for (engine, entry) in pairs {
          guard case .object(let parts) = entry else { return nil }
          var cosine: Double?
          var kl: Double?
          for (part, item) in parts {
            guard case .number(let text) = item, let number = Double(text) else { return nil }
            switch part {
            case "cosine": cosine = number
            case "kl": kl = number
            default: return nil
            }
          }
          guard let cosine, let kl else { return nil }
          paired[engine] = LogitSimilarity(cosine: cosine, kl: kl)
        }
        record.paired = paired
      case "skip":
        guard case .object(let parts) = value else { return nil }
        var reason: String?
        var detail: String?
        for (part, item) in parts {
          guard case .string(let text) = item else { return nil }
          switch part {
          case "reason": reason = text
          case "detail": detail = text
          default: return nil
          }
        }
        guard let reason, let detail else { return nil }
        record.skip = SkipReason(reason: reason, detail: detail)
      default:
        return nil
      }
    }
    return sawIndex && sawKey ? record : nil
  }

  indirect enum Value {
    case object([(String, Value)])
    case array([Value])
    case string(String)
    case number(String)
    case null
  }

  /// A strict recursive-descent JSON parser for the subset records use (no booleans).
  struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    var atEnd: Bool {
      mutating get {
        skipSpace()
        return position == bytes.count
      }
    }

    mutating func skipSpace() {
      while position < bytes.count,
        bytes[position] == 0x20 || bytes[position] == 0x09 || bytes[position] == 0x0A
          || bytes[position] == 0x0D
      {
        position += 1
      }
    }

    mutating func value() -> Value? {
      skipSpace()
      guard position < bytes.count else { return nil }
      switch bytes[position] {
      case UInt8(ascii: "{"):
        position += 1
        var fields = [(String, Value)]()
        skipSpace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
          position += 1
          return .object(fields)
        }
        while true {
          skipSpace()
          guard let name = string() else { return nil }
          skipSpace()
          guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { return nil }
          position += 1
          guard let item = value() else { return nil }
          fields.append((name, item))
          skipSpace()
          guard position < bytes.count else { return nil }
          if bytes[position] == UInt8(ascii: ",") {
            position += 1
            continue
          }
          guard bytes[position] == UInt8(ascii: "}") else { return nil }
          position += 1
          return .object(fields)
        }
      case UInt8(ascii: "["):
        position += 1
        var items = [Value]()
        skipSpace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
          position += 1
          return .array(items)
        }
        while true {
          guard let item = value() else { return nil }
          items.append(item)
          skipSpace()
          guard position < bytes.count else { return nil }
          if bytes[position] == UInt8(ascii: ",") {
            position += 1
            continue
          }
          guard bytes[position] == UInt8(ascii: "]") else { return nil }
          position += 1
          return .array(items)
        }
      case UInt8(ascii: "\""):
        return string().map(Value.string)
      case UInt8(ascii: "n"):
        guard position + 4 <= bytes.count, bytes[position + 1] == UInt8(ascii: "u"),
          bytes[position + 2] == UInt8(ascii: "l"), bytes[position + 3] == UInt8(ascii: "l")
        else { return nil }
        position += 4
        return .null
      default:
        let start = position
        while position < bytes.count {
          let b = bytes[position]
          guard
            (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+")
              || b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
          else { break }
          position += 1
        }
        guard position > start else { return nil }
        return .number(
          String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self))
      }
    }

    /// A string without escapes is sliced directly; surrogate-pair escapes send the line to
    /// `JSONDecoder`.
    mutating func string() -> String? {
      guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { return nil }
      position += 1
      var scratch = [UInt8]()
      let start = position
      var escaped = false
      while position < bytes.count {
        let b = bytes[position]
        if b == UInt8(ascii: "\"") {
          let text =
            escaped
            ? String(decoding: scratch, as: UTF8.self)
            : String(
              decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
          position += 1
          return text
        }
        if b == UInt8(ascii: "\\") {
          if !escaped {
            scratch.append(contentsOf: bytes[start..<position])
            escaped = true
          }
          guard position + 1 < bytes.count else { return nil }
          switch bytes[position + 1] {
          case UInt8(ascii: "\""): scratch.append(UInt8(ascii: "\""))
          case UInt8(ascii: "\\"): scratch.append(UInt8(ascii: "\\"))
          case UInt8(ascii: "/"): scratch.append(UInt8(ascii: "/"))
          case UInt8(ascii: "n"): scratch.append(0x0A)
          case UInt8(ascii: "r"): scratch.append(0x0D)
          case UInt8(ascii: "t"): scratch.append(0x09)
          case UInt8(ascii: "u"):
            // Basic-plane escapes only; surrogate pairs go to JSONDecoder.
            guard position + 6 <= bytes.count,
              let code = UInt32(
                String(
                  decoding: UnsafeBufferPointer(rebasing: bytes[position + 2..<position + 6]),
                  as: UTF8.self),
                radix: 16),
              let scalar = Unicode.Scalar(code)
            else { return nil }
            scratch.append(contentsOf: Array(String(Character(scalar)).utf8))
            position += 6
            continue
          default: return nil
          }
          position += 2
          continue
        }
        if escaped { scratch.append(b) }
        position += 1
      }
      return nil
    }
  }
}
