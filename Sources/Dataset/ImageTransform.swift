/// A decoded image: 8-bit interleaved RGB, row-major, rows packed without padding.
///
/// Workers keep one and decode into it again and again, so `pixels` only grows.
public struct RGBImage: Sendable {
  public var width: Int
  public var height: Int
  public var pixels: [UInt8]

  public init(width: Int = 0, height: Int = 0, pixels: [UInt8] = []) {
    self.width = width
    self.height = height
    self.pixels = pixels
  }
}

/// Turns a decoded image into the float tensor(s) one sample contributes to a batch.
///
/// The pipeline makes one instance per worker thread, so an implementation may keep scratch
/// buffers between calls without locking.
public protocol ImageTransform: AnyObject {
  /// Floats written per image.
  var outputElementCount: Int { get }
  /// The smallest decoded size that still leaves every resize a downscale; `--fast-decode`
  /// picks the smallest TurboJPEG scaling factor at or above it.
  func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int)
  /// Writes exactly `outputElementCount` floats. Throws for an image it cannot handle
  /// (recorded as a per-image skip, never a crash).
  func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws
}
