/// Streams ImageNet validation data (tarballs, class folders, WebDataset shards) and turns
/// each image into a labelled, preprocessed float tensor exactly as a reference pipeline would.
///
/// The module knows nothing about models or metrics.
public enum DatasetModule {}
