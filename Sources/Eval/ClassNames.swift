import Dataset
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

  /// The first name of each class of `classes`, with `labelOffset` background entries in front
  /// (class ids as the model numbers them).
  public static func shortNames(of classes: ClassIndex, labelOffset: Int = 0) -> [String] {
    let names = classes.names.map {
      $0.split(separator: ",", maxSplits: 1).first.map {
        $0.trimmingCharacters(in: .whitespaces)
      } ?? $0
    }
    return Array(repeating: "background", count: max(0, labelOffset)) + names
  }
}
