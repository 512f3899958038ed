/// Loads ONNX image classifiers and executes them with a float32 and an int8 engine.
///
/// The module knows nothing about datasets or metrics: it takes tensors and returns logits.
public enum ModelModule {}
