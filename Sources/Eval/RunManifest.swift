import Foundation
import Model

/// The identity of a run, written to `run.json` before the first record.
///
/// Resume and merge compare manifests field by field: records may only be combined when
/// they were produced by the same model, data, labels, preprocessing, calibration and engines.
public struct RunManifest: Codable, Sendable, Equatable {
  /// The classifier being evaluated.
  public struct ModelIdentity: Codable, Sendable, Equatable {
    /// A display name for reports, e.g. `FasterNet T0`.
    public var name: String
    /// Where the ONNX file was read from. Not part of the identity: the file may move.
    public var path: String
    /// SHA-256 of the ONNX file, lowercase hex.
    public var sha256: String
    /// Learnable parameters (initializer elements), when known.
    public var parameterCount: Int?
    /// The model input shape, batch first, e.g. `[1, 3, 224, 224]`.
    public var inputShape: [Int]
    /// Logits per image.
    public var classCount: Int

    enum CodingKeys: String, CodingKey {
      case name, path, sha256
      case parameterCount = "parameter_count"
      case inputShape = "input_shape"
      case classCount = "class_count"
    }

    /// Creates a model identity.
    public init(
      name: String, path: String, sha256: String, parameterCount: Int?, inputShape: [Int],
      classCount: Int
    ) {
      self.name = name
      self.path = path
      self.sha256 = sha256
      self.parameterCount = parameterCount
      self.inputShape = inputShape
      self.classCount = classCount
    }
  }

  /// The model.
  public var model: ModelIdentity
  /// What identifies the data, e.g. the tarball path with its size and member count.
  public var dataset: String
  /// Where the labels came from, e.g. `labels/caffe_val.txt`.
  public var labelSource: String
  /// The preprocessing preset (key `preset`) and every setting it resolves to.
  public var preprocessing: [String: String]
  /// Calibration method, image count and source for the int8 engine; nil without one.
  public var calibration: [String: String]?
  /// Engine names, reference first, e.g. `["float", "int8"]`.
  public var engines: [String]
  /// `InferenceEngine.versionInfo` per engine name.
  public var engineVersions: [String: [String: String]]
  /// The slice of the dataset this run covers.
  public var shard: Shard

  /// Creates a manifest.
  public init(
    model: ModelIdentity, dataset: String, labelSource: String, preprocessing: [String: String],
    calibration: [String: String]?, engines: [String], engineVersions: [String: [String: String]],
    shard: Shard = .whole
  ) {
    self.model = model
    self.dataset = dataset
    self.labelSource = labelSource
    self.preprocessing = preprocessing
    self.calibration = calibration
    self.engines = engines
    self.engineVersions = engineVersions
    self.shard = shard
  }

  /// `versionInfo` of each engine, keyed by engine name, for ``engineVersions``.
  public static func versions(of engines: [any InferenceEngine]) -> [String: [String: String]] {
    Dictionary(engines.map { ($0.name, $0.versionInfo) }, uniquingKeysWith: { first, _ in first })
  }

  enum CodingKeys: String, CodingKey {
    case model, dataset, preprocessing, calibration, engines, shard
    case labelSource = "label_source"
    case engineVersions = "engine_versions"
  }

  /// Fields that may differ between manifests of the same run.
  static let nonIdentityFields: Set<String> = ["model.path"]

  /// `versionInfo` keys that describe how an engine was scheduled (its thread count, batch
  /// shards, the engine schedule), not what it computes: the logits are the same whatever
  /// they are. `run` leaves them out of ``engineVersions`` (they go to the summary's
  /// `execution`), and comparisons ignore them, so manifests written before they moved still
  /// match.
  public static let executionKeys: Set<String> = [
    "threads", "onednn.max_threads", "batch_shards", "schedule",
  ]

  /// `versions` without the ``executionKeys``.
  public static func identityVersions(
    _ versions: [String: [String: String]]
  ) -> [String: [String: String]] {
    versions.mapValues { $0.filter { !executionKeys.contains($0.key) } }
  }

  /// True for `engine_versions.<engine>.<key>` with `key` one of the ``executionKeys``.
  static func isExecutionField(_ field: String) -> Bool {
    let prefix = CodingKeys.engineVersions.rawValue + "."
    guard field.hasPrefix(prefix) else { return false }
    // Engine names hold no dots; keys may (`onednn.max_threads`).
    let rest = field.dropFirst(prefix.count).split(separator: ".", maxSplits: 1)
    return rest.count == 2 && executionKeys.contains(String(rest[1]))
  }

  /// Every identity field whose value differs, as readable lines
  /// (`model.sha256: 'ab…' here, 'cd…' in the other run`), sorted by field path.
  ///
  /// Fields under any of `ignoring` (e.g. `shard` when merging) are not compared.
  public func differences(from other: RunManifest, ignoring: Set<String> = []) -> [String] {
    let mine = flattened()
    let theirs = other.flattened()
    let ignored = Self.nonIdentityFields.union(ignoring)
    var lines = [String]()
    for field in Set(mine.keys).union(theirs.keys).sorted() {
      if ignored.contains(where: { field == $0 || field.hasPrefix($0 + ".") }) { continue }
      if Self.isExecutionField(field) { continue }
      let a = mine[field]
      let b = theirs[field]
      if a != b {
        lines.append(
          "\(field): \(a.map { "'\($0)'" } ?? "absent") vs \(b.map { "'\($0)'" } ?? "absent")")
      }
    }
    return lines
  }

  /// Leaf values by dotted path, so differences name the exact field.
  func flattened() -> [String: String] {
    var result = [String: String]()
    guard let data = try? JSONEncoder.canonical.encode(self),
      let object = try? JSONSerialization.jsonObject(with: data)
    else { return result }
    func visit(_ value: Any, _ path: String) {
      if let dictionary = value as? [String: Any] {
        if dictionary.isEmpty { result[path] = "{}" }
        for (key, child) in dictionary { visit(child, path.isEmpty ? key : "\(path).\(key)") }
      } else if let array = value as? [Any] {
        result[path] = array.map { "\($0)" }.joined(separator: ",")
      } else if value is NSNull {
        result[path] = "null"
      } else {
        result[path] = "\(value)"
      }
    }
    visit(object, "")
    return result
  }

  /// Reads `run.json`, naming the file in any error.
  public static func read(from url: URL) throws -> RunManifest {
    try readJSON(RunManifest.self, from: url, describedAs: "run manifest ")
  }

  /// Writes `run.json` atomically, so a crash never leaves half a manifest.
  public func write(to url: URL) throws {
    try writeAtomically(JSONEncoder.canonical.encode(self), to: url)
  }
}

extension JSONEncoder {
  /// Sorted keys, pretty-printed: the one encoding every output file uses, so equal values
  /// give equal bytes. Types spell snake_case keys in their `CodingKeys`; a key strategy
  /// would also rewrite dictionary keys such as preprocessing setting names.
  static var canonical: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return encoder
  }

  /// Like ``canonical`` but on one line, for `predictions.jsonl`.
  static var compactCanonical: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
  }
}

extension JSONDecoder {
  /// The decoder matching `JSONEncoder.canonical`.
  static var canonical: JSONDecoder {
    let decoder = JSONDecoder()
    return decoder
  }
}

/// Writes to a temporary file beside `url`, syncs it and renames it over `url`.
func writeAtomically(_ data: Data, to url: URL) throws {
  let temporary = url.deletingLastPathComponent()
    .appendingPathComponent(".\(url.lastPathComponent).tmp")
  do {
    _ = FileManager.default.createFile(atPath: temporary.path, contents: nil)
    let handle = try FileHandle(forWritingTo: temporary)
    try handle.write(contentsOf: data)
    try handle.synchronize()
    try handle.close()
    if rename(temporary.path, url.path) != 0 {
      throw EvalError(
        .input,
        "cannot rename \(temporary.path) to \(url.path): \(String(cString: strerror(errno)))")
    }
  } catch let error as EvalError {
    throw error
  } catch {
    throw EvalError(.input, "cannot write \(url.path): \(error.localizedDescription)")
  }
}

/// A one-line description of a decoding error, with the coding path.
func describe(_ error: Error) -> String {
  guard let decodingError = error as? DecodingError else { return "\(error)" }
  func path(_ context: DecodingError.Context) -> String {
    let p = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
      .joined(separator: ".")
    return p.isEmpty ? "" : " at \(p)"
  }
  switch decodingError {
  case .dataCorrupted(let context):
    return "corrupted data\(path(context)): \(context.debugDescription)"
  case .keyNotFound(let key, let context):
    return "missing field '\(key.stringValue)'\(path(context))"
  case .typeMismatch(_, let context):
    return "wrong type\(path(context)): \(context.debugDescription)"
  case .valueNotFound(_, let context): return "missing value\(path(context))"
  @unknown default: return "\(error)"
  }
}

/// Reads and decodes one of the tool's JSON files; errors name the file and, for a decoding
/// error, the field at fault. `what` ("summary ", "run manifest ", …) prefixes the path.
func readJSON<T: Decodable>(_ type: T.Type, from url: URL, describedAs what: String) throws -> T {
  let data: Data
  do {
    data = try Data(contentsOf: url)
  } catch {
    throw EvalError(.input, "cannot read \(what)\(url.path): \(error.localizedDescription)")
  }
  do {
    return try JSONDecoder.canonical.decode(type, from: data)
  } catch {
    throw EvalError(.input, "malformed \(what)\(url.path): \(describe(error))")
  }
}
