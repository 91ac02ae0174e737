// `tandem bench`: throughput of a model (the headline preset or an archive) on generated data, the
// time split of a step, the dense-equivalent GFLOP/s against an sgemm peak
// measured in the same run, and peak memory. Runs locally or under mpirun.

import CKernels
import Foundation
import TandemCore
import TandemKeras

/// The same dense count for any model: Dense 2·T·I·O (T = 1 on features), a recurrent
/// layer 2·T·(D + U)·G, Conv1D 2·S·K·C·F per sample forward (the Embedding is a
/// lookup; element-wise work is not counted), ×3 for forward + backward.
package func denseFlopsPerSample(_ model: Model) -> Double {
    3 * model.layers.reduce(0) { $0 + $1.forwardFlopsPerSample }
}

/// Single-thread cblas_sgemm GFLOP/s on 512³ (best of a few repetitions).
public func measureSGEMMPeak(seconds: Double = 0.3) -> Double {
    let n = 512
    let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    defer {
        a.deallocate()
        b.deallocate()
        c.deallocate()
    }
    var rng = SeededGenerator(seed: 1)
    for i in 0..<(n * n) {
        a[i] = Float(rng.uniform(-1, 1))
        b[i] = Float(rng.uniform(-1, 1))
        c[i] = 0
    }
    var best = 0.0
    let end = monotonicSeconds() + seconds
    repeat {
        let t = monotonicSeconds()
        gemm(.none, .none, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, beta: 0, c: c, ldc: n)
        best = max(best, 2 * Double(n * n * n) / (monotonicSeconds() - t) / 1e9)
    } while monotonicSeconds() < end
    return best
}

/// Peak resident set size of this process, in bytes.
package func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// Starts the kernel's record of this process's peak resident set (VmHWM) afresh
/// (`5` to /proc/self/clear_refs), so a later `trainingPeakResidentBytes` covers
/// only what ran since. False where the kernel does not offer it.
@discardableResult package func resetPeakResident() -> Bool {
    guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
    defer { try? handle.close() }
    return (try? handle.write(contentsOf: Data("5".utf8))) != nil
}

/// VmHWM of /proc/self/status in bytes: the peak resident set since the last reset.
package func peakResidentSinceReset() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { return nil }
    return kb * 1024
}

/// Resident set size of this process now, in bytes (/proc/self/statm).
public func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
        let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// What one benchmark configuration measured.
public struct BenchmarkResult: Sendable {
    package var ranks = 1, batchPerRank = 0, optimizer = ""
    public var microBatch: Int?
    public var samplesPerSecond = 0.0
    public var intervals: [Double] = []
    public var timings = StepTimings()
    public var gflops = 0.0, sgemmPeak = 0.0
    /// With diagnostics: the median milliseconds of one per-head diagnostic pass (on top of the step).
    public var diagnosticMilliseconds: Double?
    /// Peak RSS while training (the record reset after set-up: the generated data and the
    /// archive read are not training); `lifetimePeakRSS` is the whole process's.
    public var peakRSS = 0, lifetimePeakRSS = 0, stateBytes = 0, activationBytes = 0
    /// What the process holds before any model exists: the runtime, MPI, BLAS and its
    /// buffers, measured (resident) after the sgemm peak and before the data and model.
    public var fixedRuntimeBytes = 0
    /// The dataset's memory-mapped files (inputs, targets, weights). The pages of every row
    /// a batch has read stay resident, so up to this much of the peak is data, which no
    /// term of the bound counts.
    package var dataBytes = 0
    /// The kernels the model's convolutions run (Model.convolutionKernels).
    public var convolutions: String?
    /// Buckets the gradient exchange was overlapped in (`--overlap-exchange`; 0: not overlapped).
    public var exchangeBuckets = 0
    /// Gradient exchange time per sample of the global batch (with gradient accumulation over N
    /// steps it falls by about N: the arena crosses ranks on update steps only).
    public var exchangeMicrosecondsPerSample: Double {
        1e6 * timings.exchange / Double(max(timings.steps * ranks * batchPerRank, 1))
    }
    /// The target: peak RSS ≤ 1.3 × (parameters + gradients + slots) + activations + the fixed runtime.
    public var memoryBound: Double { 1.3 * Double(stateBytes) + Double(activationBytes) + Double(fixedRuntimeBytes) }

    public var json: String {
        jsonObject([
            ("ranks", ranks), ("batch_per_rank", batchPerRank), ("global_batch", ranks * batchPerRank),
            ("optimizer", optimizer), ("micro_batch", microBatch ?? 0), ("samples_per_second", samplesPerSecond),
            ("forward_ms", 1000 * timings.forward / Double(max(timings.steps, 1))),
            ("backward_ms", 1000 * timings.backward / Double(max(timings.steps, 1))),
            ("exchange_ms", 1000 * timings.exchange / Double(max(timings.steps, 1))),
            ("exchange_us_per_sample", exchangeMicrosecondsPerSample),
            ("optimizer_ms", 1000 * timings.optimizer / Double(max(timings.steps, 1))),
            ("gflops", gflops), ("sgemm_peak_gflops", sgemmPeak), ("peak_rss_mb", Double(peakRSS) / 1e6),
            ("lifetime_peak_rss_mb", Double(lifetimePeakRSS) / 1e6),
            ("state_mb", Double(stateBytes) / 1e6), ("activation_mb", Double(activationBytes) / 1e6),
            ("memory_bound_mb", memoryBound / 1e6),
            ("fixed_runtime_mb", Double(fixedRuntimeBytes) / 1e6), ("data_mb", Double(dataBytes) / 1e6),
            ("diagnostic_ms", diagnosticMilliseconds ?? 0),
            ("exchange_buckets", exchangeBuckets), ("blas", BLASKernels.description), ("gemm", GEMMKernels.description),
            ("convolutions", convolutions ?? "none"),
        ])
    }
}

/// Trains `warmup` steps, then `intervals` × `steps` timed steps; samples/s is the median interval.
/// With `diagnostics`, then `steps` per-head diagnostic passes, timed one by one.
public func runBenchmark(
    step: TrainingStep, data: Dataset, batchPerRank: Int, warmup: Int, intervals: Int,
    steps: Int, diagnostics: HeadDiagnostics? = nil
) throws -> BenchmarkResult {
    let comm = step.communicator
    let global = batchPerRank * comm.size
    var epoch = 0
    var cursor = 0
    var order = epochPermutation(count: data.count, seed: 1, epoch: 0)
    func oneStep() throws {
        if cursor + global > data.count {
            epoch += 1
            cursor = 0
            order = epochPermutation(count: data.count, seed: 1, epoch: epoch)
        }
        _ = try order.withUnsafeBufferPointer {
            try step.run(globalBatch: UnsafeBufferPointer(rebasing: $0[cursor..<(cursor + global)]), data: data)
        }
        cursor += global
    }
    // The generated data's scratch is freed by now; give it back so it is not counted.
    tandem_release_free_memory()
    let setupPeak = peakResidentBytes()  // the reset below clears ru_maxrss too
    let resetPeak = resetPeakResident()
    for _ in 0..<warmup { try oneStep() }
    step.resetTimings()
    var rates: [Double] = []
    for _ in 0..<intervals {
        try comm.barrier()
        let t = monotonicSeconds()
        for _ in 0..<steps { try oneStep() }
        var elapsed = [monotonicSeconds() - t]
        try comm.allReduceMax(&elapsed)  // the slowest rank sets the pace
        rates.append(Double(global * steps) / elapsed[0])
    }
    var result = BenchmarkResult()
    if let d = diagnostics, !d.shared.isEmpty {
        var times: [Double] = []
        for _ in 0..<steps {
            if cursor + global > data.count { cursor = 0 }
            try comm.barrier()
            let t = monotonicSeconds()
            _ = try order.withUnsafeBufferPointer {
                try step.diagnose(
                    d, globalBatch: UnsafeBufferPointer(rebasing: $0[cursor..<(cursor + global)]), data: data)
            }
            var elapsed = [monotonicSeconds() - t]
            try comm.allReduceMax(&elapsed)
            times.append(elapsed[0])
            cursor += global
        }
        result.diagnosticMilliseconds = 1000 * times.sorted()[times.count / 2]
    }
    result.ranks = comm.size
    result.batchPerRank = batchPerRank
    result.optimizer = step.optimizer.config.kind.rawValue
    result.microBatch = step.microBatch
    result.intervals = rates
    result.samplesPerSecond = rates.sorted()[rates.count / 2]
    result.timings = step.timings
    result.exchangeBuckets = step.exchangeBuckets
    result.convolutions = step.model.convolutionKernels
    result.gflops = result.samplesPerSecond * denseFlopsPerSample(step.model) / 1e9 / Double(comm.size)
    let store = step.model.parameters
    result.stateBytes = store.count * 4 * (2 + step.optimizer.slots.count)
    result.activationBytes = step.model.activationBytes
    result.dataBytes = (data.inputs + data.targets + data.sampleWeights.compactMap { $0 }).reduce(0) {
        $0 + $1.byteCount
    }
    let lifetime = max(setupPeak, peakResidentBytes())
    var rss = [Double(resetPeak ? peakResidentSinceReset() ?? lifetime : lifetime), Double(lifetime)]
    try comm.allReduceMax(&rss)
    result.peakRSS = Int(rss[0])
    result.lifetimePeakRSS = Int(rss[1])
    return result
}

/// One shape of a step's matrix products, measured on each library (`tandem bench --gemm`).
public struct GEMMShapeMeasure {
    public let shape: GEMMShape
    /// Calls per training step.
    public let calls: Int
    public let openBLAS: Double, oneDNN: Double
    /// The library `gemm` runs this shape on in this process.
    public let chosen: GEMMLibrary
    /// The largest difference of oneDNN's result from OpenBLAS's (products of ±1 inputs, accumulated once).
    public let largestDifference: Float
    /// Milliseconds per step this shape's calls take on `library`.
    public func milliseconds(_ library: GEMMLibrary) -> Double {
        1000 * Double(calls) * 2 * Double(shape.m * shape.n * shape.k) / 1e9
            / (library == .openBLAS ? openBLAS : oneDNN)
    }
}

/// The shapes one training step multiplies (recorded while it runs), each measured on OpenBLAS and oneDNN,
/// largest share of the step first.
public func measureStepGEMMs(step: TrainingStep, data: Dataset, batchPerRank: Int) throws -> [GEMMShapeMeasure] {
    let log = GEMMShapeLog()
    GEMMShapeLog.current = log
    defer { GEMMShapeLog.current = nil }
    _ = try runBenchmark(step: step, data: data, batchPerRank: batchPerRank, warmup: 0, intervals: 1, steps: 1)
    GEMMShapeLog.current = nil
    return log.counts.sorted { $0.key < $1.key }.map { shape, calls in
        let blas = measureGEMM(shape, library: .openBLAS)
        let dnnl = measureGEMM(shape, library: .oneDNN)
        return GEMMShapeMeasure(
            shape: shape, calls: calls, openBLAS: blas.gflops, oneDNN: dnnl.gflops,
            chosen: GEMMKernels.library(m: shape.m, n: shape.n, k: shape.k),
            largestDifference: dnnl.largestDifference)
    }.sorted { $0.milliseconds(.openBLAS) > $1.milliseconds(.openBLAS) }
}
