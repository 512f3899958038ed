extension Pooling {
  /// The 2D pads to give oneDNN for this pooling over an NCHW `input` producing `output`.
  ///
  /// oneDNN always rounds the output size down; ceil mode is expressed by extending the
  /// bottom/right padding until its floor rule gives the graph's output size.
  func oneDNNPadding(input: [Int], output: [Int]) -> (left: [Int], right: [Int]) {
    let left = Array(pads[0..<2])
    var right = Array(pads[2..<4])
    for d in 0..<2 {
      let extent = (kernelShape[d] - 1) * dilations[d] + 1
      let floorOutput = (input[d + 2] + left[d] + right[d] - extent) / strides[d] + 1
      if floorOutput != output[d + 2] {
        right[d] = (output[d + 2] - 1) * strides[d] + extent - input[d + 2] - left[d]
      }
    }
    return (left, right)
  }
}
