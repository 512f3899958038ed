/// A classifier ready to run: float32 input tensors in, float32 logits out.
///
/// Both engines (float32 and int8) conform, and so do the fakes the Eval tests use. An engine
/// is built for one batch size; the caller owns the buffers, so a steady-state run allocates
/// nothing.
public protocol InferenceEngine: AnyObject {
  /// A short identifier used in reports, e.g. `float` or `int8`.
  var name: String { get }
  /// The model input shape this engine was built for, batch first (e.g. `[16, 3, 224, 224]`).
  var inputShape: [Int] { get }
  /// Logits per image (e.g. 1000, or 1001 with a background class).
  var classCount: Int { get }
  /// Versions of everything that computed the numbers (kernel library, ISA), for provenance.
  var versionInfo: [String: String] { get }
  /// Runs one batch. `input` holds `inputShape.reduce(1, *)` floats in the model's input
  /// layout; `output` receives `inputShape[0] * classCount` logits, image-major.
  func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws
}

extension InferenceEngine {
  public var batchSize: Int { inputShape[0] }
  public var inputElementCount: Int { inputShape.reduce(1, *) }
}
