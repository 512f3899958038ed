import Foundation

/// An image that contributes nothing to a batch, and why.
public struct SkippedSample: Sendable, Equatable, CustomStringConvertible {
  /// The sample key (member path without the image extension).
  public var key: String
  /// `container:member`, to find the bytes.
  public var member: String
  /// E.g. `not a JPEG: PNG data`, `truncated JPEG: …`, `empty member`, `label missing: …`.
  public var reason: String
  /// Position in the source's image order, before sharding, class filtering and the limit
  /// (the same number whatever shard or subset a run evaluates).
  public var sourceIndex: Int = 0
  public var description: String { "\(member): \(reason)" }
}

/// A damaged image that was still decoded (libjpeg warning), kept as Pillow keeps it.
public struct SampleWarning: Sendable, Equatable {
  /// The sample key.
  public var key: String
  /// `container:member`.
  public var member: String
  /// The libjpeg warning text.
  public var message: String
}

/// A group of consecutive samples in data set order.
///
/// The valid samples come first: `keys`, `labels` and the first `count * elementCount` floats
/// of `tensor` belong to them; the rest of `tensor` is zero. The tensor memory is reused: it is
/// valid only until the next call to ``Pipeline/next()``.
public struct Batch {
  /// 0-based batch number.
  public var index: Int
  /// Position of this batch's first sample in the (sharded, filtered, limited) sample order.
  public var firstSample: Int
  /// Valid samples (at most the batch size; fewer at the end or after skips).
  public var count: Int { keys.count }
  /// Keys of the valid samples, in order.
  public var keys: [String]
  /// Each valid sample's position in the source's image order, before sharding, class
  /// filtering and the limit: a stable identity across shards, subsets and skips.
  public var sourceIndices: [Int]
  /// Class indices of the valid samples (label offset applied).
  public var labels: [Int]
  /// Floats per sample.
  public var elementCount: Int
  /// `batchSize * elementCount` floats.
  public var tensor: UnsafeBufferPointer<Float>
  /// Every output of a ``MultiOutputTransform`` (`tensors[0]` is `tensor`): output `k` holds
  /// `batchSize * elementCounts[k]` floats, valid samples first, in the same order. One
  /// element for a single-output transform.
  public var tensors: [UnsafeBufferPointer<Float>]
  /// Floats per sample of each of `tensors`.
  public var elementCounts: [Int]
  /// Samples of this batch's range that were skipped, in order.
  public var skipped: [SkippedSample]
  /// Samples kept despite a decoder warning.
  public var warnings: [SampleWarning]
}

/// Totals of a run so far.
public struct PipelineSummary: Sendable {
  /// Layout used (forced or detected); nil before the first sample.
  public var layout: DataSource.Layout?
  /// Samples entered into batches (valid plus skipped).
  public var samples: Int
  /// Images the reader has seen in the source, before sharding, class filtering and the limit
  /// (the whole data set once a run without a limit has finished).
  public var sourceSamples: Int
  /// Samples skipped.
  public var skipped: Int
  /// Samples kept with a decoder warning.
  public var warnings: Int
  /// Images decoded (each at most once, whatever the number of transform outputs).
  public var decodedImages: Int = 0
  /// Bytes the reader has consumed from the containers (compressed bytes for a compressed
  /// tar), counting finished containers in full; with ``PipelineSummary/totalBytes`` it
  /// measures how far through the data the run is.
  public var bytesRead: Int = 0
  /// Bytes of all containers (file sizes; for a directory the sum of its files' sizes).
  public var totalBytes: Int = 0
  /// Members that were not samples (at most the first 1000 listed).
  public var ignoredMembers: [IgnoredMember]
  /// All ignored members.
  public var ignoredMemberCount: Int
  /// Provenance of the labels: the ground-truth file or the layout's own labels.
  public var labelSource: String
}

/// Streams a data source into batches of preprocessed, labelled tensors.
///
/// One reader thread reads the containers sequentially and hands each image's bytes to a pool
/// of decode+transform workers. Batch membership is fixed by sample order, so the output is the
/// same for any worker count. Memory stays flat: a fixed set of byte buffers and batch tensors is
/// recycled, and the reader waits when all are in use (backpressure).
public final class Pipeline {
  /// Run-time choices.
  public struct Options {
    /// Decode+transform threads (default: one per core).
    public var workers: Int
    /// Added to every label, e.g. 1 for 1001-class models with background at 0.
    public var labelOffset: Int
    /// Stop after this many samples (after sharding and filtering).
    public var limit: Int?
    /// `(i, n)`: keep only samples whose position in the source's image order (before any
    /// filter or limit) is congruent to `i` modulo `n` — deterministic sharding across runs.
    public var shard: (index: Int, count: Int)?
    /// Keep only samples whose label (offset applied) passes; unlabelled samples are kept so
    /// they are reported as skips.
    public var classFilter: (@Sendable (Int) -> Bool)?
    /// Make the first per-image problem fatal (thrown when its batch is reached).
    public var strict: Bool
    /// Decoder settings.
    public var decoder: JPEGDecoder.Options
    /// Batches that may be filled ahead of the one the caller holds.
    public var prefetchBatches: Int

    /// Defaults: one worker per core, no offset, no limit, not strict, accurate decoding.
    public init(
      workers: Int = ProcessInfo.processInfo.activeProcessorCount, labelOffset: Int = 0,
      limit: Int? = nil, shard: (index: Int, count: Int)? = nil,
      classFilter: (@Sendable (Int) -> Bool)? = nil, strict: Bool = false,
      decoder: JPEGDecoder.Options = .init(), prefetchBatches: Int = 2
    ) {
      self.workers = workers
      self.labelOffset = labelOffset
      self.limit = limit
      self.shard = shard
      self.classFilter = classFilter
      self.strict = strict
      self.decoder = decoder
      self.prefetchBatches = prefetchBatches
    }
  }

  /// Samples per batch.
  public let batchSize: Int
  /// Floats per sample (the transform's `outputElementCount`).
  public let elementCount: Int
  /// Floats per sample of each output (one element unless the transform is a
  /// ``MultiOutputTransform``).
  public let elementCounts: [Int]
  private let state: PipelineState
  private var nextBatchIndex = 0
  private var finished = false

  /// Starts the threads. `groundTruth` labels a flat layout; when nil the shipped ILSVRC2012
  /// validation ground truth is loaded if a flat layout is found. `transformFactory` is called
  /// once per worker, here on the caller's thread.
  public init(
    source: DataSource, classes: ClassIndex, groundTruth: GroundTruth? = nil, batchSize: Int,
    options: Options = Options(), transformFactory: () throws -> ImageTransform
  ) throws {
    guard batchSize > 0 else { throw DatasetError.configuration("batch size must be positive") }
    guard options.workers > 0 else { throw DatasetError.configuration("workers must be positive") }
    if let shard = options.shard, shard.count < 1 || shard.index < 0 || shard.index >= shard.count {
      throw DatasetError.configuration("shard \(shard.index) of \(shard.count) is not valid")
    }
    if let limit = options.limit, limit < 0 {
      throw DatasetError.configuration("limit must not be negative")
    }
    var workers: [WorkerContext] = []
    for _ in 0..<options.workers {
      workers.append(
        WorkerContext(
          transform: try transformFactory(), decoder: try JPEGDecoder(options: options.decoder),
          fastDecode: options.decoder.fastDecode))
    }
    let elementCounts = workers[0].elementCounts
    let elementCount = elementCounts[0]
    self.elementCount = elementCount
    self.elementCounts = elementCounts
    guard elementCounts.allSatisfy({ $0 > 0 }),
      workers.allSatisfy({ $0.elementCounts == elementCounts })
    else {
      throw DatasetError.configuration("transforms disagree on or report no output size")
    }
    self.batchSize = batchSize
    let reader = SampleReader(
      source: source, classes: classes, groundTruth: groundTruth,
      groundTruthProvider: { try GroundTruth.imageNetValidation(classes: classes) })
    state = PipelineState(
      reader: reader, batchSize: batchSize, elementCounts: elementCounts, options: options,
      slotCount: max(1, options.prefetchBatches) + 1, bufferCount: options.workers * 2 + 2)
    state.start(workers: workers)
  }

  deinit { state.cancel() }

  /// Stops the threads early; further calls to ``next()`` return nil.
  public func cancel() {
    state.cancel()
    finished = true
  }

  /// Totals so far (complete once ``next()`` has returned nil).
  public var summary: PipelineSummary { state.summary() }

  /// The next batch in order, nil at the end. Throws a reader error (truncated archive, …)
  /// after the batches read before it, or in strict mode the first per-image problem.
  public func next() throws -> Batch? {
    guard !finished else { return nil }
    if nextBatchIndex > 0 { state.release(batch: nextBatchIndex - 1) }
    do {
      guard let batch = try state.waitForBatch(nextBatchIndex) else {
        finished = true
        return nil
      }
      nextBatchIndex += 1
      if state.options.strict, let first = batch.skipped.first {
        throw DatasetError.sample(key: first.member, reason: first.reason)
      }
      return batch
    } catch {
      finished = true
      state.cancel()
      throw error
    }
  }
}

/// What a worker owns: not shared, so it needs no locking.
final class WorkerContext: @unchecked Sendable {
  let transform: ImageTransform
  let multi: MultiOutputTransform?
  let elementCounts: [Int]
  let decoder: JPEGDecoder
  var image = RGBImage()
  /// Reused output views for a multi-output transform (no allocation per image).
  var outputs: [UnsafeMutableBufferPointer<Float>]
  /// The decoder's size hint, made once (a closure built per image would be allocated per
  /// image); nil unless fast decoding can use it.
  let minimumSize: ((Int, Int) -> (width: Int, height: Int))?
  init(transform: ImageTransform, decoder: JPEGDecoder, fastDecode: Bool) {
    self.transform = transform
    self.decoder = decoder
    minimumSize =
      fastDecode
      ? { [transform] width, height in
        transform.minimumDecodeSize(sourceWidth: width, sourceHeight: height)
      } : nil
    multi = transform as? MultiOutputTransform
    elementCounts = multi?.outputElementCounts ?? [transform.outputElementCount]
    outputs = Array(
      repeating: UnsafeMutableBufferPointer(start: nil, count: 0), count: elementCounts.count)
  }
}

/// A reusable byte buffer, owned by one thread at a time.
final class ByteBuffer {
  var bytes: [UInt8] = []
}

/// One batch's worth of reusable output.
final class BatchSlot {
  /// One tensor per transform output.
  let tensors: [UnsafeMutableBufferPointer<Float>]
  var tensor: UnsafeMutableBufferPointer<Float> { tensors[0] }
  var batchIndex: Int
  var keys: [String?]
  var sourceIndices: [Int]
  var labels: [Int]
  var members: [String]
  var problems: [String?]
  var warnings: [String?]
  var done = 0

  init(batchIndex: Int, batchSize: Int, elementCounts: [Int]) {
    tensors = elementCounts.map { count in
      let tensor = UnsafeMutableBufferPointer<Float>.allocate(capacity: batchSize * count)
      tensor.initialize(repeating: 0)
      return tensor
    }
    self.batchIndex = batchIndex
    keys = Array(repeating: nil, count: batchSize)
    sourceIndices = Array(repeating: 0, count: batchSize)
    labels = Array(repeating: 0, count: batchSize)
    members = Array(repeating: "", count: batchSize)
    problems = Array(repeating: nil, count: batchSize)
    warnings = Array(repeating: nil, count: batchSize)
  }

  deinit { for tensor in tensors { tensor.deallocate() } }

  func reset(for batchIndex: Int) {
    self.batchIndex = batchIndex
    done = 0
    for i in keys.indices {
      keys[i] = nil
      problems[i] = nil
      warnings[i] = nil
    }
  }
}

struct WorkItem {
  var sequence: Int
  var sourceIndex: Int
  var key: String
  var member: String
  var label: Int?
  var problem: String?
  var buffer: ByteBuffer
  var byteCount: Int
}

/// The state shared by the reader, the workers and the consumer, guarded by one condition.
final class PipelineState: @unchecked Sendable {
  let options: Pipeline.Options
  let batchSize: Int
  let elementCount: Int
  let elementCounts: [Int]
  private let condition = NSCondition()
  private let reader: SampleReader
  private var freeBuffers: [ByteBuffer]
  private var work: [WorkItem] = []
  private var workHead = 0
  private let slots: [BatchSlot]
  private var releasedBatches = 0
  private var readerFinished = false
  private var readerError: Error?
  private var sequenceCount = 0
  /// Source images the reader saw (set when it finishes).
  private var sourceSampleCount = 0
  private var cancelled = false
  private var skippedTotal = 0
  private var warningTotal = 0
  private var decodedTotal = 0
  private var bytesRead = 0
  private let totalBytes: Int
  // Copies of the reader's own state, which only the reader thread may touch.
  private var layout: DataSource.Layout?
  private var ignored: [IgnoredMember] = []
  private var ignoredCount = 0
  private var groundTruthSource: String?

  init(
    reader: SampleReader, batchSize: Int, elementCounts: [Int], options: Pipeline.Options,
    slotCount: Int, bufferCount: Int
  ) {
    self.reader = reader
    self.batchSize = batchSize
    self.elementCount = elementCounts[0]
    self.elementCounts = elementCounts
    totalBytes = reader.source.paths.reduce(0) { $0 + SampleReader.containerBytes($1) }
    self.options = options
    freeBuffers = (0..<bufferCount).map { _ in ByteBuffer() }
    slots = (0..<slotCount).map {
      BatchSlot(batchIndex: $0, batchSize: batchSize, elementCounts: elementCounts)
    }
    work.reserveCapacity(bufferCount)
  }

  func start(workers: [WorkerContext]) {
    let readerThread = Thread { [self] in runReader() }
    readerThread.name = "imagenet-eval reader"
    readerThread.start()
    for (number, context) in workers.enumerated() {
      let thread = Thread { [self] in runWorker(context) }
      thread.name = "imagenet-eval worker \(number)"
      thread.start()
    }
  }

  func cancel() {
    condition.lock()
    cancelled = true
    condition.broadcast()
    condition.unlock()
  }

  func summary() -> PipelineSummary {
    condition.lock()
    defer { condition.unlock() }
    let labelSource: String
    switch layout {
    case .flat?: labelSource = groundTruthSource ?? "ground truth"
    case .classFolder?: labelSource = "class folder names"
    case .webDataset?: labelSource = ".cls members"
    case nil: labelSource = "none yet"
    }
    return PipelineSummary(
      layout: layout, samples: sequenceCount, sourceSamples: sourceSampleCount,
      skipped: skippedTotal, warnings: warningTotal, decodedImages: decodedTotal,
      bytesRead: bytesRead, totalBytes: totalBytes, ignoredMembers: ignored,
      ignoredMemberCount: ignoredCount,
      labelSource: labelSource)
  }

  // MARK: Reader

  private func runReader() {
    var ordinal = 0
    var buffer: ByteBuffer?
    var failure: Error?
    readLoop: while true {
      if let limit = options.limit, sequenceCountUnlocked() >= limit { break }
      condition.lock()
      while freeBuffers.isEmpty && !cancelled { condition.wait() }
      if cancelled {
        condition.unlock()
        break
      }
      if buffer == nil { buffer = freeBuffers.removeLast() }
      condition.unlock()
      let raw: RawSample?
      do {
        raw = try reader.next(into: &buffer!.bytes)
      } catch {
        failure = error
        break
      }
      publishReaderState()
      guard var sample = raw else { break }
      defer { ordinal += 1 }
      if let shard = options.shard, ordinal % shard.count != shard.index { continue }
      if var label = sample.label {
        label += options.labelOffset
        sample.label = label
        if let filter = options.classFilter, !filter(label) { continue }
      }
      if sample.problem == nil && sample.byteCount == 0 {
        sample.problem = "empty member (0 bytes)"
      }
      condition.lock()
      let sequence = sequenceCount
      let batchIndex = sequence / batchSize
      // Backpressure: a sample may only enter once its batch has a free slot.
      while batchIndex >= releasedBatches + slots.count && !cancelled { condition.wait() }
      if cancelled {
        condition.unlock()
        break readLoop
      }
      work.append(
        WorkItem(
          sequence: sequence, sourceIndex: ordinal, key: sample.key, member: sample.member,
          label: sample.label,
          problem: sample.problem, buffer: buffer!, byteCount: sample.byteCount))
      buffer = nil
      sequenceCount += 1
      condition.broadcast()
      condition.unlock()
    }
    publishReaderState()
    condition.lock()
    if let buffer { freeBuffers.append(buffer) }
    readerError = failure
    readerFinished = true
    sourceSampleCount = ordinal
    condition.broadcast()
    condition.unlock()
  }

  /// Called on the reader thread only.
  private func publishReaderState() {
    let newLayout = reader.layout
    let newCount = reader.ignoredCount
    let changed = newCount != ignoredCount
    let newIgnored = changed ? reader.ignored : []
    let source = reader.groundTruthSource
    let consumed = reader.bytesConsumed
    condition.lock()
    bytesRead = consumed
    layout = newLayout
    groundTruthSource = source
    if changed {
      ignored = newIgnored
      ignoredCount = newCount
    }
    condition.unlock()
  }

  private func sequenceCountUnlocked() -> Int {
    condition.lock()
    defer { condition.unlock() }
    return sequenceCount
  }

  // MARK: Workers

  private func runWorker(_ context: WorkerContext) {
    while true {
      condition.lock()
      while workHead == work.count && !readerFinished && !cancelled { condition.wait() }
      if cancelled || workHead == work.count {
        condition.unlock()
        return
      }
      let item = work[workHead]
      workHead += 1
      if workHead == work.count {
        work.removeAll(keepingCapacity: true)
        workHead = 0
      }
      let slot = slots[(item.sequence / batchSize) % slots.count]
      condition.unlock()

      let position = item.sequence % batchSize
      var problem = item.problem
      var warning: String?
      var decoded = false
      if problem == nil {
        do {
          warning = try item.buffer.bytes.withUnsafeBytes { raw in
            try context.decoder.decode(
              UnsafeRawBufferPointer(rebasing: raw[0..<item.byteCount]), into: &context.image,
              minimumSize: context.minimumSize)
          }
          decoded = true
          do {
            if let multi = context.multi {
              for (k, count) in elementCounts.enumerated() {
                context.outputs[k] = UnsafeMutableBufferPointer(
                  rebasing: slot.tensors[k][(position * count)..<((position + 1) * count)])
              }
              try multi.apply(context.image, into: context.outputs)
            } else {
              let output = UnsafeMutableBufferPointer(
                rebasing: slot.tensor[(position * elementCount)..<((position + 1) * elementCount)])
              try context.transform.apply(context.image, into: output)
            }
          } catch {
            problem = "transform failed: \(error)"
          }
        } catch {
          problem = "\(error)"
        }
      }

      condition.lock()
      slot.keys[position] = item.key
      slot.sourceIndices[position] = item.sourceIndex
      slot.members[position] = item.member
      slot.labels[position] = item.label ?? -1
      slot.problems[position] = problem
      slot.warnings[position] = warning
      slot.done += 1
      if decoded { decodedTotal += 1 }
      if problem != nil { skippedTotal += 1 }
      if warning != nil { warningTotal += 1 }
      freeBuffers.append(item.buffer)
      condition.broadcast()
      condition.unlock()
    }
  }

  // MARK: Consumer

  func release(batch index: Int) {
    condition.lock()
    let slot = slots[index % slots.count]
    slot.reset(for: index + slots.count)
    releasedBatches = index + 1
    condition.broadcast()
    condition.unlock()
  }

  func waitForBatch(_ index: Int) throws -> Batch? {
    condition.lock()
    let slot = slots[index % slots.count]
    let first = index * batchSize
    var expected = batchSize
    while true {
      if cancelled {
        condition.unlock()
        return nil
      }
      if readerFinished {
        expected = min(batchSize, sequenceCount - first)
        if expected <= 0 {
          let error = readerError
          condition.unlock()
          if let error { throw error }
          return nil
        }
      }
      if slot.done == expected && (expected == batchSize || readerFinished) { break }
      condition.wait()
    }
    condition.unlock()
    // The slot is now only touched by this thread until it is released.
    var keys: [String] = []
    var sourceIndices: [Int] = []
    var labels: [Int] = []
    var skipped: [SkippedSample] = []
    var warnings: [SampleWarning] = []
    keys.reserveCapacity(expected)
    labels.reserveCapacity(expected)
    for position in 0..<expected {
      guard let key = slot.keys[position] else { continue }
      if let problem = slot.problems[position] {
        skipped.append(
          SkippedSample(
            key: key, member: slot.members[position], reason: problem,
            sourceIndex: slot.sourceIndices[position]))
        continue
      }
      if let warning = slot.warnings[position] {
        warnings.append(SampleWarning(key: key, member: slot.members[position], message: warning))
      }
      let target = keys.count
      if target != position {
        // Close the gap left by skips so valid samples are contiguous.
        for (tensor, count) in zip(slot.tensors, elementCounts) {
          let source = UnsafeBufferPointer(
            rebasing: tensor[(position * count)..<((position + 1) * count)])
          _ = UnsafeMutableBufferPointer(
            rebasing: tensor[(target * count)..<((target + 1) * count)]
          ).update(fromContentsOf: source)
        }
      }
      keys.append(key)
      sourceIndices.append(slot.sourceIndices[position])
      labels.append(slot.labels[position])
    }
    if keys.count < batchSize {
      for (tensor, count) in zip(slot.tensors, elementCounts) {
        UnsafeMutableBufferPointer(rebasing: tensor[(keys.count * count)...]).update(repeating: 0)
      }
    }
    return Batch(
      index: index, firstSample: first, keys: keys, sourceIndices: sourceIndices, labels: labels,
      elementCount: elementCount,
      tensor: UnsafeBufferPointer(slot.tensor), tensors: slot.tensors.map(UnsafeBufferPointer.init),
      elementCounts: elementCounts, skipped: skipped, warnings: warnings)
  }
}
