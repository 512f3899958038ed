import CInt8Kernels
import Foundation

/// Split and Concat along channels on codes, for the channels-last (NHWC) layout of the int8
/// engine: FasterNet's partial convolution splits and re-joins the channels in every block.
///
/// Each slice is a run of channels at the same offset in every pixel. When a slice's codes
/// change parameters, the 256-entry table `requantizationTable` maps them; it is built by the
/// engine's own dequantise and quantise, so the result is bit-identical to dequantising,
/// splitting or concatenating in float and quantising again (what the float fallback did).
enum Int8ChannelSlices {
  /// The byte each input byte becomes when codes of `input` are re-expressed with `output`'s
  /// parameters: `quantize(dequantize(code))` with the engine's arithmetic, indexed by the
  /// code's bit pattern. Nil when every code maps to itself (a plain copy).
  static func requantizationTable(from input: QuantParams, to output: QuantParams) throws
    -> [UInt8]?
  {
    var floats = [Float](repeating: 0, count: 256)
    var table = [UInt8](repeating: 0, count: 256)
    let bytes = (0..<256).map { UInt8($0) }
    try bytes.withUnsafeBytes { codes in
      try floats.withUnsafeMutableBufferPointer {
        try Int8Layout.dequantize(codes.baseAddress!, shape: [256], params: input, into: $0)
      }
    }
    try floats.withUnsafeBufferPointer { values in
      try table.withUnsafeMutableBytes {
        try Int8Layout.quantize(values, shape: [256], params: output, into: $0.baseAddress!)
      }
    }
    return table == bytes ? nil : table
  }

  /// The table of re-expressing codes with `first` and then with `second` (nil: a plain
  /// copy), i.e. `second[first[b]]`: exactly the two passes' result.
  static func composed(_ first: [UInt8]?, _ second: [UInt8]?) -> [UInt8]? {
    guard let first else { return second }
    guard let second else { return first }
    let table = first.map { second[Int($0)] }
    return table == (0..<256).map { UInt8($0) } ? nil : table
  }

  /// Copies `channels` channels of every one of `pixels` pixels from `source` (a channel
  /// stride of `sourceStride`, first channel `sourceOffset`) to `destination` (stride
  /// `destinationStride`, first channel `destinationOffset`), through `table` when given.
  static func copy(
    pixels: Int, channels: Int,
    from source: UnsafePointer<UInt8>, sourceStride: Int, sourceOffset: Int,
    to destination: UnsafeMutablePointer<UInt8>, destinationStride: Int,
    destinationOffset: Int, table: UnsafePointer<UInt8>?
  ) {
    var s = source + sourceOffset
    var d = destination + destinationOffset
    if let table, Int8Passes.usesVectorLookup {
      ie_int8_lookup_rows_avx512bw(
        s, sourceStride, d, destinationStride, pixels, channels, table)
    } else if let table {
      for _ in 0..<pixels {
        for c in 0..<channels { d[c] = table[Int(s[c])] }
        s += sourceStride
        d += destinationStride
      }
    } else if channels == sourceStride && channels == destinationStride {
      d.update(from: s, count: pixels * channels)
    } else {
      for _ in 0..<pixels {
        d.update(from: s, count: channels)
        s += sourceStride
        d += destinationStride
      }
    }
  }
}

/// One channel slice of a Split or Concat, ready to run.
struct Int8ChannelSlice {
  var source: UnsafePointer<UInt8>
  var sourceStride: Int
  var sourceOffset: Int
  var destination: UnsafeMutablePointer<UInt8>
  var destinationStride: Int
  var destinationOffset: Int
  var channels: Int
  /// The requantisation table, when the slice changes parameters.
  var table: [UInt8]?
}

/// The work of one Split or Concat node: its slices, copied in order.
final class Int8ChannelSliceKernel {
  let pixels: Int
  let slices: [Int8ChannelSlice]
  /// Every table in one contiguous block, so running allocates nothing.
  private let tables: UnsafeMutablePointer<UInt8>

  init(pixels: Int, slices: [Int8ChannelSlice]) {
    self.pixels = pixels
    self.slices = slices
    tables = .allocate(capacity: max(1, slices.count) * 256)
    for (index, slice) in slices.enumerated() {
      if let table = slice.table { (tables + index * 256).update(from: table, count: 256) }
    }
  }

  deinit { tables.deallocate() }

  func run() {
    let bytes = pixels * slices.reduce(0) { $0 + $1.channels }
    KernelTeam.forEachRange(pixels, threads: KernelTeam.threads(forBytes: bytes)) { range in
      for (index, slice) in slices.enumerated() {
        Int8ChannelSlices.copy(
          pixels: range.count, channels: slice.channels,
          from: slice.source + range.lowerBound * slice.sourceStride,
          sourceStride: slice.sourceStride, sourceOffset: slice.sourceOffset,
          to: slice.destination + range.lowerBound * slice.destinationStride,
          destinationStride: slice.destinationStride,
          destinationOffset: slice.destinationOffset,
          table: slice.table == nil ? nil : UnsafePointer(tables + index * 256))
      }
    }
  }
}
