extension Pooling {
  /// The pads to give oneDNN for this pooling over an NC… `input` producing `output`.
  ///
  /// oneDNN always rounds the output size down; ceil mode is expressed by extending the
  /// bottom/right padding until its floor rule gives the graph's output size.
  func oneDNNPadding(input: [Int], output: [Int]) -> (left: [Int], right: [Int]) {
    let spatial = kernelShape.count
    let left = Array(pads[0..<spatial])
    var right = Array(pads[spatial..<(2 * spatial)])
    for d in 0..<spatial {
      let extent = (kernelShape[d] - 1) * dilations[d] + 1
      let floorOutput = (input[d + 2] + left[d] + right[d] - extent) / strides[d] + 1
      if floorOutput != output[d + 2] {
        right[d] = (output[d + 2] - 1) * strides[d] + extent - input[d + 2] - left[d]
      }
    }
    return (left, right)
  }
}
