import CDNNL

/// A failure reported by oneDNN, or a primitive that would run on a reference kernel while the
/// engine is in strict mode.
public struct DNNLError: Error, CustomStringConvertible {
  /// What was being done, e.g. `convolution primitive descriptor (src 1x3x224x224 nhwc …)`.
  public let operation: String
  /// oneDNN's status name (`invalid_arguments`, `unimplemented`…) or a short reason.
  public let reason: String

  public var description: String { "oneDNN: \(operation) failed: \(reason)" }
}

/// Turns a status into a thrown error that names the operation; `operation` is an autoclosure so
/// the success path builds no strings.
@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ operation: @autoclosure () -> String) throws {
  guard status != dnnl_success else { return }
  let name = dnnl_status2str(status).map { String(cString: $0) } ?? "status \(status.rawValue)"
  throw DNNLError(operation: operation(), reason: name)
}

/// The handle a oneDNN create call (`create`, filling its argument) returned. On failure
/// (an error status, or no handle) runs `onFailure` to release what the caller holds, then
/// throws the status's error for `operation`, or "no `handleName` returned".
func dnnlCreate<Handle>(
  _ operation: String, returning handleName: String, onFailure: () -> Void = {},
  _ create: (inout Handle?) -> dnnl_status_t
) throws -> Handle {
  var handle: Handle?
  let status = create(&handle)
  guard status == dnnl_success, let handle else {
    onFailure()
    try dnnlCheck(status, operation)
    throw DNNLError(operation: operation, reason: "no \(handleName) returned")
  }
  return handle
}
