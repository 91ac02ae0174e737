// `tandem bench`: the training throughput of a model, the preset or an archive (see Benchmark.swift).

import ArgumentParser
import Foundation
import Tandem

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training throughput of a model (the headline preset or a .keras archive) on generated data.",
        discussion: """
            Prints samples/s (median of the timed intervals after a warm-up), the time split
            of a step, dense-equivalent GFLOP/s per rank against a single-thread sgemm peak
            measured in the same run, and peak memory. Run under mpirun for multi-rank
            figures: --batch-size is PER RANK here, so the global batch is ranks × batch.
            scripts/bench.sh runs the standard matrix.
            """)

    @Option(name: .customLong("batch-size"), help: "Samples per rank per step.") var batchSize: Int = 32
    @OptionGroup(title: "Optimizer (as train's flags; default Adam with Keras's defaults)") var optimizerOptions:
        OptimizerOptions
    @Option(help: "Warm-up steps (not timed).") var warmup: Int = 3
    @Option(help: "Timed intervals (the median is reported).") var intervals: Int = 5
    @Option(help: "Steps per timed interval.") var steps: Int = 0
    @Option(help: "Generated samples (default: enough for every step without repeats where cheap).") var samples: Int =
        0
    @Flag(help: "Measure reproducible mode (exact fixed-point sums of canonical micro-batches).") var reproducible =
        false
    @Option(name: .customLong("micro-batch"), help: "Micro-batch size in --reproducible mode.") var microBatch: Int = 8
    @Flag(help: "Print one JSON object instead of the table.") var json = false
    @Option(name: .customLong("gradient-surgery"), help: "pcgrad: measure steps with PCGrad on the shared tensors.")
    var gradientSurgery: String?
    @Flag(
        name: .customLong("head-diagnostics"),
        help: "Also time the per-head diagnostic pass of --head-diagnostics-every (per pass, on top of a step).")
    var headDiagnostics = false
    @Flag(
        name: .customLong("overlap-exchange"),
        help: "Measure with the gradient sums started during backward (as train's flag).")
    var overlapExchange = false
    @Flag(
        name: .customLong("gemm"),
        help:
            "Instead of throughput: every matrix-product shape of one step, measured on OpenBLAS and on oneDNN, and the library each runs on."
    )
    var gemmShapes = false
    @Flag(
        help:
            "Instead of the throughput table: predicted samples/s and efficiency at 1 … 64 ranks, one per host, from this one-rank step's compute time and the collectives it makes (run without mpirun)."
    )
    var scaling = false
    @Option(
        name: .customLong("link"),
        help: "With --scaling: a link as NAME=LATENCY_US:GBIT (repeatable; default 10GbE=25:10 and 100Gb/s=3:100).")
    var links: [String] = []
    @OptionGroup var size: ModelSizeOptions

    func run() throws {
        try runCommand { comm in
            guard batchSize > 0, intervals > 0, warmup >= 0, steps >= 0 else {
                throw TandemError.usage("--batch-size and --intervals must be positive")
            }
            let optimizerConfig = try optimizerOptions.config(over: OptimizerConfig(kind: .adam))
            let linkModels = try links.isEmpty ? LinkModel.defaults : links.map { try LinkModel(parsing: $0) }
            guard !scaling || (comm.size == 1 && !reproducible) else {
                throw TandemError.usage(
                    "--scaling measures one rank's step and predicts the rest: run it without mpirun and --reproducible"
                )
            }
            let resolved = try size.resolve(comm)
            let description = resolved.description
            let stepsPerInterval = steps > 0 ? steps : max(4, 2048 / (batchSize * comm.size))
            let global = batchSize * comm.size
            // The peak first: its BLAS buffers then count in the fixed runtime, as in training; oneDNN's
            // engine and code likewise.
            let peak = measureSGEMMPeak()
            warmConvolutions()
            var fixed = [Double(residentBytes())]
            try comm.allReduceMax(&fixed)
            let n = samples > 0 ? samples : max(4096, global * 4)
            guard n >= global else { throw TandemError.usage("--samples must be at least the global batch \(global)") }
            // Every rank generates the same data into its own folder: nothing shared is needed.
            let dir = NSTemporaryDirectory() + "tandem-bench-\(getpid())"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try comm.agree(
                Result {
                    if let config = resolved.headline {
                        try generateHeadlineData(directory: dir, samples: n, config: config, seed: 1)
                    } else {
                        try generateData(directory: dir, samples: n, description: description, seed: 1)
                    }
                }.error)
            guard microBatch > 0 else { throw TandemError.usage("--micro-batch must be at least 1") }
            let model = try comm.agreeOn { try description.build(maxBatch: reproducible ? microBatch : batchSize) }
            model.parameters.initialize(seed: 1)
            let heads = description.heads
            guard !heads.isEmpty else {
                throw TandemError.usage(
                    "\(size.model): the model has no loss to train (compile it with loss=... in Keras)")
            }
            let optimizer = Optimizer(optimizerConfig, parameters: model.parameters)
            try optimizer.constrain(description.constraints, in: model.parameters)
            let step = try TrainingStep(
                model: model, heads: heads, optimizer: optimizer, communicator: comm, l2: [:])
            if reproducible { step.microBatch = microBatch }
            step.overlapExchange = overlapExchange
            if let gradientSurgery {
                guard gradientSurgery == "pcgrad", !reproducible else {
                    throw TandemError.usage(
                        "--gradient-surgery: pcgrad is the supported method, without --reproducible")
                }
                step.surgery = PCGrad(model: model, heads: heads, seed: 1)
            }
            let data = try Dataset(directory: dir, model: model, heads: heads)
            if gemmShapes {
                let rows = try measureStepGEMMs(step: step, data: data, batchPerRank: batchSize)
                if comm.rank == 0 { printGEMMShapes(rows) }
                return
            }
            var result = try runBenchmark(
                step: step, data: data, batchPerRank: batchSize, warmup: warmup,
                intervals: intervals, steps: stepsPerInterval,
                diagnostics: headDiagnostics ? HeadDiagnostics(model: model, heads: heads) : nil)
            result.sgemmPeak = peak
            result.fixedRuntimeBytes = Int(fixed[0])
            if scaling {
                // The collectives one step makes with more than one rank, recorded from a real step.
                let recorder = RecordingCommunicator()
                let recording = try TrainingStep(
                    model: model, heads: heads, optimizer: optimizer, communicator: recorder, l2: [:])
                let indices = (0..<Int32(recorder.size * batchSize)).map { $0 }
                _ = try indices.withUnsafeBufferPointer { try recording.run(globalBatch: $0, data: data) }
                let compute = Double(batchSize) / result.samplesPerSecond
                let backward = result.timings.backward / Double(max(result.timings.steps, 1))
                printScaling(
                    calls: recorder.calls, compute: compute, backward: backward, batch: batchSize, links: linkModels,
                    json: json)
                return
            }
            guard comm.rank == 0 else { return }
            if json {
                print(result.json)
                return
            }
            let t = result.timings
            let k = Double(max(t.steps, 1))
            func ms(_ x: Double) -> String { String(format: "%.1f", 1000 * x / k) }
            let name =
                resolved.headline.map {
                    "headline \($0.vocabulary)×\($0.embeddingDimension), seq \($0.sequenceLength), lstm \($0.lstmUnits)"
                } ?? size.model
            print(
                "configuration     \(comm.size) rank(s) × batch \(batchSize) (global \(global)), \(optimizerConfig.kind.rawValue)\(reproducible ? ", reproducible (micro-batch \(microBatch))" : ""), \(name)"
            )
            print(
                "path              \(step.pathDescription)\(step.surgery != nil ? ", PCGrad on \(step.surgery!.diagnostics.packedCount) shared parameters" : "")"
            )
            print(
                "samples/s         \(Int(result.samplesPerSecond))  (median of \(intervals) × \(stepsPerInterval) steps: \(result.intervals.map { String(Int($0)) }.joined(separator: ", ")))"
            )
            print(
                "step split (ms)   forward \(ms(t.forward))  backward \(ms(t.backward))  exchange \(ms(t.exchange))  optimizer \(ms(t.optimizer))"
                    + (result.exchangeBuckets > 0
                        ? "  (exchange overlapped with backward, \(result.exchangeBuckets) buckets)" : ""))
            print(
                String(format: "exchange          %.2f µs per sample", result.exchangeMicrosecondsPerSample)
                    + (optimizerConfig.gradientAccumulationSteps.map {
                        " (gradients accumulated over \($0) steps: one allreduce per \($0))"
                    } ?? ""))
            print(
                String(
                    format:
                        "GFLOP/s per rank  %.1f dense-equivalent (%.0f%% of the %.1f GFLOP/s sgemm peak measured now)",
                    result.gflops, 100 * result.gflops / peak, peak))
            print("matrix products   \(GEMMKernels.description), \(blasThreads()) thread(s) per rank")
            if let kernels = step.model.convolutionKernels { print("convolutions      \(kernels)") }
            if let d = result.diagnosticMilliseconds {
                print(
                    String(
                        format: "head diagnostics  %.1f ms per diagnostic pass (median of %d), %.1f× a step of %.1f ms",
                        d, stepsPerInterval, d / (1000 * Double(global) / result.samplesPerSecond),
                        1000 * Double(global) / result.samplesPerSecond))
            } else if headDiagnostics {
                print("head diagnostics  none: no tensor is reached by more than one head")
            }
            print(
                String(
                    format:
                        "memory per rank   peak RSS while training %.0f MB (of the whole process %.0f MB); parameters + gradients + optimizer slots %.0f MB, activations %.0f MB; fixed runtime %.0f MB; target ≤ 1.3 × state + activations + fixed = %.0f MB",
                    Double(result.peakRSS) / 1e6, Double(result.lifetimePeakRSS) / 1e6, Double(result.stateBytes) / 1e6,
                    Double(result.activationBytes) / 1e6,
                    Double(result.fixedRuntimeBytes) / 1e6, result.memoryBound / 1e6))
        }
    }
}

/// `tandem bench --scaling`'s tables: per link, predicted samples/s and efficiency at 1 … 64 ranks.
private func printScaling(
    calls: [CollectiveCall], compute: Double, backward: Double, batch: Int, links: [LinkModel], json: Bool
) {
    let ranks = [1, 2, 3, 4, 8, 16, 32, 64]
    let gradientBytes = calls.filter(\.gradient).reduce(0) { $0 + $1.bytes }
    if json {
        var rows: [[String: Any]] = []
        for link in links {
            for p in predictScaling(
                computeSeconds: compute, backwardSeconds: backward, calls: calls, batchPerRank: batch, link: link,
                ranks: ranks)
            {
                rows.append([
                    "link": link.name, "latency_us": link.latency * 1e6, "gbit": link.bytesPerSecond * 8 / 1e9,
                    "ranks": p.ranks, "samples_per_second": p.samplesPerSecond, "efficiency": p.efficiency,
                    "overlapped_samples_per_second": p.overlappedSamplesPerSecond,
                    "overlapped_efficiency": p.overlappedEfficiency, "exchange_ms": 1000 * p.exchangeSeconds,
                    "gradient_latencies": p.gradient.latencies, "gradient_link_bytes": p.gradient.bytes,
                    "other_latencies": p.other.latencies, "other_link_bytes": p.other.bytes,
                ])
            }
        }
        let object: [String: Any] = [
            "compute_ms": 1000 * compute, "backward_ms": 1000 * backward, "batch_per_rank": batch,
            "collectives": calls.count, "gradient_bytes": gradientBytes, "predictions": rows,
        ]
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            print(String(decoding: data, as: UTF8.self))
        }
        return
    }
    print(
        String(
            format:
                "scaling           one rank: %.2f ms a step at batch %d (backward %.2f ms); per step %d collectives, %.0f KB of gradient",
            1000 * compute, batch, 1000 * backward, calls.count, Double(gradientBytes) / 1e3))
    let sizes = Dictionary(grouping: calls, by: { "\($0.kind.rawValue) \($0.bytes) B" }).map { "\($1.count) × \($0)" }
    print("collectives       " + sizes.sorted().joined(separator: ", "))
    for link in links {
        print(
            String(
                format: "link %@: %.0f µs, %.0f Gbit/s (Open MPI: recursive doubling under 10 KB, ring above)",
                link.name, link.latency * 1e6, link.bytesPerSecond * 8 / 1e9))
        print("  ranks    samples/s   efficiency   exchange ms   overlapped samples/s   efficiency")
        for p in predictScaling(
            computeSeconds: compute, backwardSeconds: backward, calls: calls, batchPerRank: batch, link: link,
            ranks: ranks)
        {
            print(
                String(
                    format: "  %5d   %10.0f   %9.0f%%   %11.3f   %20.0f   %9.0f%%", p.ranks, p.samplesPerSecond,
                    100 * p.efficiency, 1000 * p.exchangeSeconds, p.overlappedSamplesPerSecond,
                    100 * p.overlappedEfficiency))
        }
    }
}

/// `tandem bench --gemm`'s table: one line per shape, then the step's matrix-product time on each choice.
private func printGEMMShapes(_ rows: [GEMMShapeMeasure]) {
    print("matrix products   \(GEMMKernels.description)")
    print("shape (m×n×k, op A op B)   calls/step   OpenBLAS GFLOP/s   oneDNN GFLOP/s   oneDNN/OpenBLAS   runs on")
    for r in rows {
        print(
            r.shape.text.padding(toLength: 27, withPad: " ", startingAt: 0)
                + String(
                    format: "%10d   %16.1f   %14.1f   %15.2f   %@", r.calls, r.openBLAS, r.oneDNN,
                    r.oneDNN / r.openBLAS,
                    r.chosen.rawValue))
    }
    func total(_ pick: (GEMMShapeMeasure) -> GEMMLibrary) -> Double {
        rows.reduce(0) { $0 + $1.milliseconds(pick($1)) }
    }
    print(
        String(
            format:
                "matrix products per step: %.3f ms all OpenBLAS, %.3f ms all oneDNN, %.3f ms as chosen, %.3f ms the faster of each",
            total { _ in .openBLAS }, total { _ in .oneDNN }, total { $0.chosen },
            total { $0.oneDNN > $0.openBLAS ? .oneDNN : .openBLAS }))
    let worst = rows.map(\.largestDifference).max() ?? 0
    print(String(format: "largest difference of oneDNN's products from OpenBLAS's: %.2g", worst))
}

extension Result where Failure == Error {
    var error: Error? { if case .failure(let e) = self { return e } else { return nil } }
}
