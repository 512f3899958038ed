import Foundation

/// Human-readable class names for reports.
public enum ClassNames {
  /// Reads names from a `synset_words.txt`-style file (`n01440764 tench, Tinca tinca`: the
  /// first name after the WordNet id is kept) or a plain file with one name per line, in
  /// class-id order.
  public static func load(from url: URL) throws -> [String] {
    let text: String
    do {
      text = try String(contentsOf: url, encoding: .utf8)
    } catch {
      throw EvalError(.input, "cannot read class names \(url.path): \(error.localizedDescription)")
    }
    var names = [String]()
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    for (number, raw) in lines.enumerated() {
      let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty {
        if number == lines.count - 1 { break }
        throw EvalError(.input, "\(url.path):\(number + 1): empty class name")
      }
      var name = Substring(line)
      if let space = line.firstIndex(of: " "), line.hasPrefix("n"),
        line[line.index(after: line.startIndex)..<space].allSatisfy(\.isNumber)
      {
        name = line[line.index(after: space)...]
      }
      let first = name.split(separator: ",", maxSplits: 1).first.map(String.init) ?? String(name)
      names.append(first.trimmingCharacters(in: .whitespaces))
    }
    return names
  }

  /// The names shipped in `labels/synset_words.txt` under `root` (the current directory by
  /// default), or nil when that file is absent.
  public static func loadDefault(
    root: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
  ) throws -> [String]? {
    let url = root.appendingPathComponent("labels/synset_words.txt")
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    return try load(from: url)
  }
}
