import ArgumentParser
import Dataset
import Foundation
import Model

/// `imagenet-eval run --model m.onnx --data …`: every image decoded and preprocessed once,
/// fed to each engine, scored side by side, logged per batch, summarised and reported.
struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Evaluate a classifier on a data set with one or more engines, side by side.",
    discussion: """
      Each image is decoded and preprocessed once and the batch goes to every engine \
      (--engines float,int8: the first is the reference, the second the candidate whose \
      top-1 drop --max-drop gates). Records are appended to OUT/predictions.jsonl after \
      every batch; a killed run continues with --resume. At the end OUT holds summary.json, \
      report.md and report.html.

      Threads: --workers decode+preprocess threads (default one per core) run \
      alongside --threads oneDNN/OpenMP threads (default one per core); decoding of the \
      next batches overlaps inference of the current one. Two or more engines (--engines \
      float,int8) can share the threads in two arrangements: sequential runs the engines in \
      turn with all --threads each; concurrent runs each engine on its own thread at the same \
      time with --threads split between them (2 threads: one each), so no OpenMP team waits \
      for another and the lighter engine's idle share goes to decoding. Which is faster \
      depends on the model and the machine, so the default --engine-schedule auto builds the \
      engines for both (calibration runs once; the second set reuses it), runs the first \
      \(ScheduleTrial.batchCount) batches alternately on each (a warm-up batch each, then \
      \(ScheduleTrial.measuredBatches) measured each), compares the median time per image of \
      the whole batch step (engines, scoring, logging and waiting for the next decoded batch, \
      since decoding competes for the same cores), keeps the faster arrangement for the rest \
      of the run and frees the other. The trial batches are ordinary batches of the run, each \
      evaluated and recorded once. The choice and both timings are printed on stderr in one \
      line and recorded in summary.json (provenance.execution, with each engine's threads); \
      a run that ends during the trial keeps its records and reports what was measured. \
      --engine-schedule sequential or concurrent fixes the arrangement without a trial; one \
      engine always runs sequentially. The logits do not depend on the arrangement or the \
      thread count, so neither is part of the run's identity: --resume continues a run \
      under another schedule (or another auto decision). Calibration and the layer report \
      use all --threads. On a machine shared with other busy processes set \
      OMP_WAIT_POLICY=passive in the environment: libgomp's default spin-waiting then loses \
      the cores (1.5-2.5x slower end to end on a loaded 2-core VM; one-thread engines of the \
      concurrent arrangement do not spin); on a quiet machine the default is 5-10% faster \
      (bench/README.md).

      The data set is identified in run.json by each container's name, size and \
      modification time, not a hash of its bytes (hashing a 6 GB tarball would take longer \
      than many runs), so resuming after the data file was rewritten in place with the same \
      size and time is not detected.

      A model that is already quantized (QDQ or QOperator: onnxruntime's quantize_static, \
      `imagenet-eval quantize`, --save-quantized) runs on the int8 engine with the scales, \
      zero points and codes it holds; int8 is then the default engine. Nothing is calibrated, \
      so --calib, --calib-count, --calib-method, --calib-percentile, --float, --int16, \
      --mapper-config and --save-quantized are refused; --int8-color still gives the int8 \
      engine its own colour path (int8-rgb, the same model on the --preset tensor, is then \
      the reference, so the drop is the input path's cost). The file holds no float model, so --engines float is \
      refused: measure the drop with the float source model (--engines float,int8), or \
      compare the int8 engine with the model's ONNX definition evaluated in float \
      (--engines reference,int8; slow, for a few hundred images). The reports then describe \
      the imported quantization (format, integer and float-fallback nodes) instead of \
      calibration settings, and say why there is no per-layer report.

      Exit status: 0 success; 1 usage or input error (bad model, unsupported op, \
      preprocessing output not matching the model input); 2 internal error; 3 --max-drop \
      exceeded; 4 --resume refused (OUT holds a different run).
      """)

  @Option(help: ArgumentHelp("The ONNX classifier.", valueName: "file"))
  var model: String

  @OptionGroup var dataset: DatasetOptions

  @Option(
    help: ArgumentHelp(
      "Engines, comma-separated, reference first: \(EngineFactory.knownNames.joined(separator: ", ")) "
        + "(default: float; int8 for a quantized model).",
      valueName: "list"))
  var engines: String?

  @Option(help: ArgumentHelp("Output directory.", valueName: "dir"))
  var out: String = "results/run"

  @Option(help: ArgumentHelp("oneDNN/OpenMP threads (default: one per core).", valueName: "n"))
  var threads: Int?

  @Option(help: ArgumentHelp("Images per engine call.", valueName: "n"))
  var batch: Int = 16

  @Option(
    help: ArgumentHelp(
      "How two or more engines share the threads: auto (time both arrangements on the first "
        + "batches, keep the faster), sequential (each engine in turn with all --threads) or "
        + "concurrent (each on its own thread at once, --threads split between them). "
        + "Default: \(RunCommand.defaultSchedule.rawValue).",
      valueName: EngineSchedule.allCases.map(\.rawValue).joined(separator: "|")))
  var engineSchedule: EngineSchedule = RunCommand.defaultSchedule

  @Flag(help: "Continue the run in --out after an interruption (refused if it is another run).")
  var resume = false

  @Option(
    help: ArgumentHelp(
      "Exit 3 when the second engine's top-1 is more than this many points below the first's.",
      valueName: "points"))
  var maxDrop: Double?

  @Option(
    help: ArgumentHelp(
      "Display name of the model in reports (default: the file name).", valueName: "name"))
  var name: String?

  @Flag(help: "No progress line on stderr.")
  var quiet = false

  @OptionGroup var calibrationOptions: CalibrationOptions

  @Option(
    help: ArgumentHelp(
      "Also write the calibrated int8 model as a QDQ ONNX model (and FILE.json); needs int8 in --engines.",
      valueName: "file"))
  var saveQuantized: String?

  func validate() throws {
    try dataset.requireData()
    try OptionChecks.require(batch, atLeast: 1, "--batch")
    try OptionChecks.require(threads, atLeast: 1, "--threads")
    // The default engine depends on the model (int8 for a quantized one): `run()` checks
    // the engine list again once the model is read.
    if let engines {
      do {
        try checkEngineOptions(try EngineFactory.parseNames(engines))
      } catch let error as EvalError {
        throw ValidationError(error.message)
      }
    }
    if let maxDrop, !(maxDrop.isFinite && maxDrop >= 0) {
      throw ValidationError("--max-drop must be a non-negative number of points, got \(maxDrop)")
    }
  }

  /// Checks the options that need particular engines against the engine list `names`.
  func checkEngineOptions(_ names: [String]) throws {
    if !names.contains("int8") {
      let c = calibrationOptions
      for (option, given) in [
        ("--mapper-config", c.mapperConfig != nil), ("--int8-color", c.int8Color != nil),
        ("--int16", !c.int16Nodes.isEmpty), ("--float", !c.floatNodes.isEmpty),
      ] where given {
        throw EvalError(
          .input,
          "\(option) configures the int8 engine; --engines \(names.joined(separator: ",")) has none"
        )
      }
      if saveQuantized != nil {
        throw EvalError(.input, "--save-quantized writes the int8 model; add int8 to --engines")
      }
    }
    if maxDrop != nil, names.count < 2 {
      throw EvalError(
        .input,
        "--max-drop compares two engines; --engines \(names.joined(separator: ",")) names only one")
    }
  }

  func run() throws {
    let sessionStart = Date()
    let config = try inputError { try dataset.preprocessConfig() }

    // Model first: a bad model or a shape mismatch fails before any calibration or image.
    let graph = try EngineFactory.loadModel(at: model)
    var engineNames = try EngineFactory.parseNames(
      engines ?? EngineFactory.defaultEngine(for: graph))
    try checkEngineOptions(engineNames)
    try ModelInput.check(graph, against: config, modelPath: model)
    // A quantized model runs on its own scales and codes: nothing to calibrate or save.
    let imported = graph.isQuantized ? try ImportedQuantization(modelAt: model) : nil
    if let imported {
      try calibrationOptions.refuse(
        forQuantizedModel: imported, modelPath: model,
        others: saveQuantized == nil ? [] : ["--save-quantized"])
    }
    let modelLoadSeconds = Date().timeIntervalSince(sessionStart)
    let buildStart = Date()
    // The int8 engine's settings and input path: options, --mapper-config, --int8-color.
    let setup =
      engineNames.contains("int8")
      ? try inputError { try calibrationOptions.resolve(graph: graph, base: config) } : nil
    for warning in setup?.warnings ?? [] { printError("warning: \(warning)") }
    let split = Self.inputSplit(engineNames: &engineNames, setup: setup)
    let quantizedFile = try saveQuantized.map {
      try QuantizedModelFile(path: $0, option: "--save-quantized")
    }
    let calibration =
      engineNames.contains("int8") && imported == nil
      ? try calibrationOptions.makeCalibration(dataset: dataset, batchSize: batch, setup: setup)
      : nil
    let clock = EngineFactory.BuildClock()
    // Every engine but int8-rgb (which shares int8's kernels) is a lane of its own.
    let laneNames = engineNames.filter { $0 != split?.secondName }
    // A single lane has nothing to run beside it: sequential, untimed. Auto builds both
    // arrangements (thread counts are fixed when primitives are created), sequential first so
    // calibration runs once, on all --threads, and the concurrent set reuses it.
    let schedules: [EngineSchedule] =
      laneNames.count < 2
      ? [.sequential] : engineSchedule == .auto ? [.sequential, .concurrent] : [engineSchedule]
    var arrangements = [EngineArrangement]()
    var calibrated: Int8Calibration?
    for schedule in schedules {
      let engineThreads = EngineLanes.threads(
        engineCount: laneNames.count, lanes: laneNames.indices.map { [$0] }, total: threads,
        concurrent: schedule == .concurrent)
      var input = calibration?.input
      if let calibrated { input?.calibrated = calibrated }
      let make = { [input] (lane: Int) throws -> any InferenceEngine in
        try EngineFactory.makeEngine(
          named: laneNames[lane], graph: graph, batchSize: batch, threads: engineThreads[lane],
          strict: dataset.strict, modelPath: model, calibration: input,
          clock: clock, calibrationThreads: threads)
      }
      // The first set calibrates (on all threads), so its engines are built in turn; the
      // second reuses the calibration, and its engines are built at once, one per core, so
      // auto costs little build time.
      var engines =
        arrangements.isEmpty
        ? try laneNames.indices.map(make) : try Self.buildConcurrently(laneNames.count, make)
      if calibrated == nil, imported == nil,
        let int8 = engines.lazy.compactMap({ $0 as? Int8Engine }).first
      {
        calibrated = int8.calibration
      }
      if let split, let int8 = engines.lazy.compactMap({ $0 as? Int8Engine }).first {
        // In `engineNames` order: records and metrics pair engines by position.
        let second = SecondInputEngine(name: split.secondName, wrapping: int8)
        engines.insert(second, at: engineNames.first == split.secondName ? 0 : engines.count)
      }
      arrangements.append(EngineArrangement(schedule: schedule, engines: engines))
    }
    // With both arrangements, the layer report and --save-quantized use the concurrent set's
    // int8 engine: one thread per lane leaves it unsharded, so its whole-batch plan (what the
    // layer report observes) exists, where the sharded one would build another; it borrows the
    // calibration's float engine. Released after the layer report, so the losing
    // arrangement's engines can be freed.
    var int8: Int8Engine?
    do {
      let int8Engines = arrangements.compactMap {
        $0.engines.lazy.compactMap { $0 as? Int8Engine }.first
      }
      int8 = int8Engines.last
      if let first = int8Engines.first, let int8 { first.shareFloatEngine(with: int8) }
    }
    // Which pipeline tensor each engine reads: the int8 engine its own input path, the rest
    // (int8-rgb included) the --preset tensor.
    let tensorIndex = arrangements[0].engines.map { split != nil && $0 is Int8Engine ? 1 : 0 }
    let calibrationSeconds = clock.calibrationSeconds
    let engineBuildSeconds = Date().timeIntervalSince(buildStart) - calibrationSeconds
    var runWarnings = setup?.warnings ?? []
    var layers: [LayerQuality]?
    var layerReportSeconds = 0.0
    let int8Description = int8.map {
      Int8Provenance.report(
        $0, imported: imported, calibration: calibrationOptions, setup: setup)
    }
    if let int8, let calibration, let int8Description {
      for name in setup?.forcedQuantized ?? [] where int8.floatFallbackNodes.contains(name) {
        let warning =
          "\(calibrationOptions.mapperConfig ?? ""): node '\(name)' is forced onto the BPU but "
          + "this int8 engine runs it in float (op not quantised here)"
        printError("warning: \(warning)")
        runWarnings.append(warning)
      }
      try quantizedFile?.write(
        int8, sourceModel: model, calibration: int8Description,
        preprocessing: QuantizedModelFile.preprocessingFields(
          setup?.preprocess ?? config, preset: dataset.preset, decoder: dataset.decoderOptions),
        batchSize: batch)
      let layerStart = Date()
      layers = try calibration.firstBatch.withUnsafeBufferPointer { first in
        try int8.layerReport(input: first, images: calibration.firstBatchCount).layers.map {
          LayerQuality(node: $0.node, sqnrDB: $0.sqnrDB, cosine: $0.cosine)
        }
      }
      layerReportSeconds = Date().timeIntervalSince(layerStart)
    }
    if int8 != nil && imported != nil {
      printError("int8: layer report \(ImportedQuantization.noLayerReport)")
    }
    int8 = nil
    for arrangement in arrangements {
      try ModelInput.check(arrangement.engines, against: config, batchSize: batch, modelPath: model)
    }
    let firstEngines = arrangements[0].engines
    let classCount = firstEngines[0].classCount
    for engine in arrangements.flatMap(\.engines) where engine.classCount != classCount {
      throw EvalError(
        .internal,
        "engine \(engine.name) gives \(engine.classCount) logits per image, \(firstEngines[0].name) gives \(classCount)"
      )
    }
    let modelURL = URL(fileURLWithPath: model)
    let identity = RunManifest.ModelIdentity(
      name: name ?? modelURL.deletingPathExtension().lastPathComponent, path: model,
      sha256: try SHA256.hexDigest(ofFile: modelURL),
      parameterCount: EngineFactory.parameterCount(of: graph),
      inputShape: [1] + firstEngines[0].inputShape.dropFirst(), classCount: classCount)

    let evaluationStart = Date()
    let opened = try dataset.makePipeline(
      batchSize: batch, configs: split.map { [config, $0.preprocess] })
    let pipeline = opened.pipeline
    defer { pipeline.cancel() }
    // The layout and label source are known once the first image has been read.
    var current = try Self.next(pipeline)
    let pipelineSummary = pipeline.summary
    // Threads, shards and the schedule do not change a logit: they are this session's
    // execution record (summary provenance), not the run's identity.
    var versions = RunManifest.identityVersions(RunManifest.versions(of: firstEngines))
    for key in versions.keys {
      versions[key]?["batch_size"] = String(batch)
    }
    let engineThreads = Dictionary(
      arrangements.map { arrangement in
        (
          arrangement.schedule.rawValue,
          RunManifest.versions(of: arrangement.engines).mapValues {
            $0.filter { RunManifest.executionKeys.contains($0.key) }
          }
        )
      }, uniquingKeysWith: { first, _ in first })
    let manifest = RunManifest(
      model: identity,
      dataset: Self.describeData(
        opened, layout: pipelineSummary.layout, classes: opened.selectedClasses),
      labelSource: opened.groundTruth?.source ?? pipelineSummary.labelSource,
      preprocessing: Self.preprocessing(opened, preset: dataset.preset),
      calibration: int8Description,
      engines: engineNames,
      engineVersions: versions,
      shard: dataset.shard)
    let outURL = URL(fileURLWithPath: out)
    let log = try ResultLog(directory: outURL, manifest: manifest, resume: resume)
    let resumeAfter = log.lastIndex ?? -1
    if resume, let last = log.lastIndex {
      printError(
        "resuming \(out): \(log.records.count) records already written (last sample index \(last))"
          + (log.droppedTornBytes > 0
            ? ", dropped a torn last line of \(log.droppedTornBytes) bytes" : ""))
    }

    let builder = try RecordBuilder(engineNames: engineNames, classCount: classCount)
    // Raw buffers: concurrent lanes write their engines' outputs at the same time.
    let outputs = firstEngines.map {
      UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.batchSize * classCount)
    }
    defer { for output in outputs { output.deallocate() } }
    for output in outputs { output.initialize(repeating: 0) }
    let alreadyCorrect = engineNames.map { engineName in
      log.records.filter { $0.label != nil && $0.engines?[engineName]?.top5.first == $0.label }
        .count
    }
    let progress = ProgressReporter(
      engineNames: engineNames,
      total: ProgressTotal.samples(
        paths: opened.source.paths, shard: dataset.shard, filtered: dataset.classes != nil,
        limit: dataset.limit),
      alreadyDone: log.records.count,
      alreadyEvaluated: log.records.filter { $0.engines != nil && $0.label != nil }.count,
      alreadyCorrect: alreadyCorrect, enabled: !quiet,
      fraction: {
        let summary = pipeline.summary
        return summary.totalBytes > 0
          ? Double(summary.bytesRead) / Double(summary.totalBytes) : nil
      })
    var sessionSamples = 0
    var warningCount = 0
    var trial = arrangements.count > 1 ? ScheduleTrial() : nil
    var decision: ScheduleDecision?
    do {
      while let batchData = current {
        let stepStart = DispatchTime.now().uptimeNanoseconds
        let indices = Self.sampleIndices(batchData)
        warningCount += batchData.warnings.count
        for warning in batchData.warnings where warningCount <= 10 {
          printError(
            "warning: \(warning.member): \(warning.message) (image kept, as Pillow keeps it)")
        }
        // Samples recorded by an earlier session are decoded again (the reader is sequential)
        // but not run again.
        let needsInference = indices.valid.contains { $0 > resumeAfter }
        var records = [ImageRecord]()
        if needsInference && batchData.count > 0 {
          let inputs = tensorIndex.map { batchData.tensors[$0] }
          let batchIndex = batchData.index
          let firstKey = batchData.keys.first ?? ""
          // During the auto trial batches alternate between the arrangements; after it only
          // the chosen one is left.
          let arrangement =
            trial?.nextArrangement.flatMap { next in
              arrangements.first { $0.schedule == next }
            } ?? arrangements[0]
          let engines = arrangement.engines
          try arrangement.lanes.run { e in
            let engine = engines[e]
            do {
              try engine.run(input: inputs[e], output: outputs[e])
            } catch let error as ModelError {
              throw EvalError(
                .internal,
                "engine \(engine.name) failed on batch \(batchIndex) (\(firstKey)…): \(error.message)"
              )
            }
          }
          let samples = zip(indices.valid, zip(batchData.keys, batchData.labels)).map {
            (index: $0.0, key: $0.1.0, label: Optional($0.1.1))
          }
          records = try builder.records(
            for: samples, logits: outputs.map { UnsafeBufferPointer($0) })
        }
        for (skipped, index) in zip(batchData.skipped, indices.skipped) {
          records.append(
            .skipped(
              index: index, key: skipped.key, label: nil,
              reason: Self.skipCategory(skipped.reason), detail: skipped.description))
        }
        records.sort { $0.index < $1.index }
        records.removeAll { $0.index <= resumeAfter }
        try log.append(records)
        progress.add(records, processed: batchData.count + batchData.skipped.count)
        sessionSamples += batchData.count + batchData.skipped.count
        current = try Self.next(pipeline)
        // The whole step, waiting for the next decoded batch included: decoding competes with
        // the engines for the cores, differently in each arrangement.
        if needsInference && batchData.count > 0, trial != nil {
          let seconds = Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9
          if let made = trial?.record(seconds: seconds, images: batchData.count) {
            decision = made
            trial = nil
            arrangements.removeAll { $0.schedule != made.chosen }
            progress.note(made.logLine)
          }
        }
      }
      if let unfinished = trial, unfinished.batchesRun > 0 {
        let made = unfinished.decision()
        decision = made
        progress.note(made.logLine)
      }
    } catch {
      progress.finish()
      try? log.synchronize()
      log.close()
      throw error
    }
    progress.finish()
    let evaluationSeconds = Date().timeIntervalSince(evaluationStart)
    let sessionSeconds = Date().timeIntervalSince(sessionStart)
    let finalSummary = pipeline.summary
    let wallSeconds: Double
    // Every run, sharded or not, records how many source images the reader saw, so `merge`
    // can prove its shards cover the data set without gaps or overlaps.
    wallSeconds =
      try log.finish(datasetSampleCount: finalSummary.sourceSamples, wallSeconds: sessionSeconds)
      .wallSeconds
    if warningCount > 10 {
      printError("\(warningCount) images in all were kept despite decoder warnings")
    }
    let summary = try RunOutput.write(
      records: log.records, manifest: manifest, directory: outURL,
      commandLine: CommandLine.arguments, wallSeconds: wallSeconds,
      classNames: ClassNames.shortNames(of: opened.classes, labelOffset: opened.labelOffset),
      layers: layers,
      timings: PhaseTimings(
        modelLoad: modelLoadSeconds, calibration: calibrationSeconds,
        engineBuild: engineBuildSeconds, evaluation: evaluationSeconds,
        total: Date().timeIntervalSince(sessionStart), evaluatedSamples: sessionSamples,
        decodedImages: finalSummary.decodedImages, layerReport: layerReportSeconds),
      warnings: runWarnings.isEmpty ? nil : runWarnings,
      execution: Self.execution(
        requested: engineSchedule, built: schedules, laneCount: laneNames.count,
        decision: decision, engineThreads: engineThreads))
    print(Self.keyLines(summary, directory: out), terminator: "")
    if let maxDrop {
      guard let drop = summary.metrics.paired?.top1Drop else {
        throw EvalError(.input, "--max-drop: no image was evaluated, so the top-1 drop is unknown")
      }
      if summary.exceedsDrop(maxDrop) {
        printError(
          "imagenet-eval: top-1 drop \(String(format: "%.2f", drop)) points "
            + "(\(engineNames[0]) -> \(engineNames[1])) exceeds --max-drop \(maxDrop)")
        throw EvalExitStatus.dropGateExceeded
      }
    }
  }

  /// The schedule `run` uses unless `--engine-schedule` says otherwise.
  static let defaultSchedule = EngineSchedule.auto

  /// `make(0..<count)` on concurrent threads (each sets its own OpenMP thread count when it
  /// creates its engine's primitives), in index order; rethrows the lowest index's error.
  static func buildConcurrently(
    _ count: Int, _ make: (Int) throws -> any InferenceEngine
  ) throws -> [any InferenceEngine] {
    var results = [Result<any InferenceEngine, any Error>?](repeating: nil, count: count)
    results.withUnsafeMutableBufferPointer { slots in
      DispatchQueue.concurrentPerform(iterations: count) { index in
        slots[index] = Result { try make(index) }
      }
    }
    return try results.map { result in
      guard let result else { throw EvalError(.internal, "an engine build did not finish") }
      return try result.get()
    }
  }

  /// This session's execution record: the arrangement that ran and why.
  static func execution(
    requested: EngineSchedule, built: [EngineSchedule], laneCount: Int,
    decision: ScheduleDecision?, engineThreads: [String: [String: [String: String]]]
  ) -> EngineExecution {
    guard built.count > 1 else {
      let chosen = built.first ?? .sequential
      return EngineExecution(
        requested: requested.rawValue, chosen: chosen.rawValue,
        reason: laneCount < 2
          ? "one engine lane, nothing to run beside it" : "fixed by --engine-schedule",
        engineThreads: engineThreads)
    }
    guard let decision else {
      return EngineExecution(
        requested: requested.rawValue, chosen: EngineSchedule.sequential.rawValue,
        reason: "no batch needed inference in this session, nothing was timed",
        trialBatches: 0, engineThreads: engineThreads)
    }
    return EngineExecution(
      requested: requested.rawValue, chosen: decision.chosen.rawValue, reason: decision.reason,
      sequentialSecondsPerImage: decision.sequentialSecondsPerImage,
      concurrentSecondsPerImage: decision.concurrentSecondsPerImage,
      trialBatches: decision.complete ? ScheduleTrial.batchCount : nil,
      engineThreads: engineThreads)
  }

  /// When the int8 engine reads its own input path (`setup.preprocess`), adds the engine
  /// that runs it on the `--preset` tensor (`int8-rgb`) to `engineNames` and returns its name
  /// and the int8 preprocessing; nil when every engine reads the same tensor.
  ///
  /// `int8-rgb` goes last, except when int8 is the only engine (a quantized model): then it
  /// goes first, as the reference, so the reported drop is what the input path costs.
  static func inputSplit(
    engineNames: inout [String], setup: Int8Setup?
  ) -> (secondName: String, preprocess: PreprocessConfig)? {
    guard let preprocess = setup?.preprocess, engineNames.contains("int8") else { return nil }
    let name = "int8" + Metrics.referenceInputSuffix
    if engineNames == ["int8"] {
      engineNames.insert(name, at: 0)
    } else if !engineNames.contains(name) {
      engineNames.append(name)
    }
    return (name, preprocess)
  }

  /// Reads the next batch, turning data errors into input errors that name the container.
  static func next(_ pipeline: Pipeline) throws -> Batch? {
    do {
      return try pipeline.next()
    } catch let error as EvalError {
      throw error
    } catch {
      throw EvalError(.input, "\(error)")
    }
  }

  /// The record index of every sample of `batch`: its position in the source's image order,
  /// before sharding, class filtering and the limit, so a sample has the same index in every
  /// shard, subset and resumed session, and merged shards line up with an unsharded run.
  static func sampleIndices(_ batch: Batch) -> (valid: [Int], skipped: [Int]) {
    (batch.sourceIndices, batch.skipped.map(\.sourceIndex))
  }

  /// A short, stable category for a pipeline skip reason (`not a JPEG: PNG data` → `decode`).
  static func skipCategory(_ reason: String) -> String {
    let lowered = reason.lowercased()
    if lowered.hasPrefix("label missing") || lowered.contains("label") { return "label" }
    if lowered.contains("empty member") { return "empty" }
    if lowered.contains("transform") || lowered.contains("preprocess") { return "transform" }
    return "decode"
  }

  /// The data set identity: each container's name, size and modification time, the layout
  /// and any class selection.
  static func describeData(
    _ opened: DatasetPipeline, layout: DataSource.Layout?, classes: [Int]?
  ) -> String {
    let formatter = ISO8601DateFormatter()
    let containers = opened.source.paths.map { path -> String in
      let url = URL(fileURLWithPath: path)
      guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
        return url.lastPathComponent
      }
      if (attributes[.type] as? FileAttributeType) == .typeDirectory {
        return url.lastPathComponent + "/ (directory)"
      }
      let size = (attributes[.size] as? Int).map { "\($0) bytes" } ?? "size unknown"
      let modified = (attributes[.modificationDate] as? Date).map { formatter.string(from: $0) }
      return "\(url.lastPathComponent) (\(size)\(modified.map { ", modified \($0)" } ?? ""))"
    }
    var text = containers.joined(separator: "; ")
    text += "; layout \(layout?.rawValue ?? "unknown")"
    if let classes { text += "; classes \(classes.map(String.init).joined(separator: ","))" }
    return text
  }

  /// Every setting that changes the pixels fed to the model, flattened to strings.
  static func preprocessing(_ opened: DatasetPipeline, preset: String) -> [String: String] {
    var result = QuantizedModelFile.preprocessingFields(
      opened.preprocess, preset: preset, decoder: opened.decoder)
    result["label_offset"] = String(opened.labelOffset)
    return result
  }

  /// The lines printed at the end: accuracy per engine, the drop, skips, speed and files.
  static func keyLines(_ summary: Summary, directory: String) -> String {
    let m = summary.metrics
    var lines = [String]()
    lines.append(
      "model:    \(summary.provenance.run.model.name) (\(summary.provenance.run.model.sha256.prefix(12))…)"
    )
    lines.append("images:   \(m.images) evaluated of \(m.samples) (\(m.skipped.total) skipped)")
    for engineName in summary.provenance.run.engines {
      guard let e = m.engines[engineName] else { continue }
      let top1 = e.top1.map { String(format: "%.2f%%", $0) } ?? "n/a"
      let top5 = e.top5.map { String(format: "%.2f%%", $0) } ?? "n/a"
      let ci =
        e.top1CI95.count == 2 ? String(format: " [%.2f, %.2f]", e.top1CI95[0], e.top1CI95[1]) : ""
      lines.append(
        "\(engineName):".padding(toLength: 10, withPad: " ", startingAt: 0)
          + "top-1 \(top1)\(ci)  top-5 \(top5)")
    }
    if let quantization = summary.provenance.run.calibration?["quantization"] {
      lines.append("quant:    \(quantization); no calibration, no layer report")
    }
    if let paired = m.paired {
      let drop = paired.top1Drop.map { String(format: "%.2f", $0) } ?? "n/a"
      let agreement = paired.agreement.map { String(format: "%.2f%%", $0) } ?? "n/a"
      lines.append(
        "drop:     \(paired.reference) -> \(paired.candidate) top-1 \(drop) points, agreement \(agreement), McNemar p \(String(format: "%.3g", paired.mcnemarP))"
      )
    }
    if let split = m.dropSplit {
      func points(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "n/a" }
      lines.append(
        "split:    quantisation \(points(split.quantization)) (\(split.reference) -> \(split.sameInput)) "
          + "+ input path \(points(split.inputPath)) (\(split.sameInput) -> \(split.candidate)) "
          + "= \(points(split.total)) points")
    }
    if let rate = summary.provenance.imagesPerSecond {
      if let t = summary.provenance.timings {
        lines.append(
          String(
            format:
              "speed:    %.1f images/s over %.1f s of evaluation; wall %.1f s (model load %.1f s, "
              + "calibration %.1f s, engine build %.1f s, layer report %.1f s)",
            rate, t.evaluation, summary.provenance.wallSeconds, t.modelLoad, t.calibration,
            t.engineBuild, t.layerReport ?? 0))
      } else {
        lines.append(
          String(format: "speed:    %.1f images/s, %.1f s", rate, summary.provenance.wallSeconds))
      }
    }
    lines.append("output:   \(directory)/{summary.json,report.md,report.html,predictions.jsonl}")
    return lines.joined(separator: "\n") + "\n"
  }
}
