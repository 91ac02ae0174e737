// `tandem bench --scaling`: predicted samples/s and efficiency at 2 … 64 ranks (one per host) from a step's
// measured compute time and the collectives it makes, over a link of given latency and bandwidth.
//
// The collectives are recorded from one real step run through `RecordingCommunicator` (rank 0 of a
// pretend group of two: every call is recorded and otherwise does nothing, so the step runs on its own
// shard). Their cost follows Open MPI's choices over TCP: below 10 KB an allreduce takes recursive
// doubling, log₂N rounds of (α + mβ) (⌊log₂N⌋ + 2 when N is not a power of two); above, the ring (or its
// segmented form, or Rabenseifner's, which share its bandwidth term): 2(N−1)α + 2(N−1)/N·mβ. An allgather
// of m bytes from each rank is a ring, (N−1)(α + mβ). Compute per rank at a fixed per-rank batch does not
// change with N (each rank has its host's core); the local reductions' arithmetic is not counted.

import Foundation
import TandemCore

/// A link between hosts: α, the time one message takes to start (software and wire latency), and β = 1 / bandwidth.
public struct LinkModel: Sendable {
    public let name: String
    public let latency: Double
    public let bytesPerSecond: Double
    public init(name: String, latency: Double, bytesPerSecond: Double) {
        (self.name, self.latency, self.bytesPerSecond) = (name, latency, bytesPerSecond)
    }

    /// "NAME=LATENCY_US:GBIT" (e.g. "10GbE=25:10").
    public init(parsing text: String) throws {
        let parts = text.split(separator: "=", maxSplits: 1)
        let numbers = parts.last.map { $0.split(separator: ":").compactMap { Double($0) } } ?? []
        guard parts.count == 2, numbers.count == 2, numbers[0] >= 0, numbers[1] > 0 else {
            throw TandemError.usage(
                "--link \(text): expected NAME=LATENCY_US:GBIT, e.g. 10GbE=25:10 (25 µs, 10 Gbit/s)")
        }
        self.init(name: String(parts[0]), latency: numbers[0] * 1e-6, bytesPerSecond: numbers[1] * 1e9 / 8)
    }

    /// The links `tandem bench --scaling` predicts for unless told others: 10 GbE over TCP and a 100 Gb/s fabric.
    public static let defaults = [
        LinkModel(name: "10GbE", latency: 25e-6, bytesPerSecond: 10e9 / 8),
        LinkModel(name: "100Gb/s", latency: 3e-6, bytesPerSecond: 100e9 / 8),
    ]
}

/// One collective call of a step, as the cost model needs it.
public struct CollectiveCall: Hashable, Sendable {
    public enum Kind: String, Sendable { case allReduce, allGather, broadcast, barrier }
    public let kind: Kind
    /// The bytes each rank contributes (an allreduce's whole buffer; an allgather's one slice).
    public let bytes: Int
    /// Whether it is the gradient exchange (the part `--overlap-exchange` can hide behind backward).
    public let gradient: Bool
}

/// Rank 0 of a pretend group of `size` ranks that records every collective and otherwise does nothing.
public final class RecordingCommunicator: Communicator {
    public let size: Int
    public var rank: Int { 0 }
    public private(set) var calls: [CollectiveCall] = []
    public init(size: Int = 2) { self.size = size }

    private func add(_ kind: CollectiveCall.Kind, _ bytes: Int, gradient: Bool = false) {
        calls.append(CollectiveCall(kind: kind, bytes: bytes, gradient: gradient))
    }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        add(.allReduce, 4 * count, gradient: true)
    }
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        add(.allReduce, 4 * count, gradient: true)
    }
    public func progressSums() throws {}
    public func waitForSums() throws {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws { add(.allReduce, 8 * count) }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) throws { add(.allReduce, 8 * count) }
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws { add(.allReduce, 8 * count) }
    public func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws {
        add(.allGather, 4 * count, gradient: true)
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {
        add(.broadcast, bytes)
    }
    public func barrier() throws { add(.barrier, 0) }
    public func abort(message: String, code: Int32) -> Never { LocalCommunicator().abort(message: message, code: code) }
    public var description: String { "recording (rank 0 of \(size), no transport)" }
}

/// A collective's cost as multiples of the link's two constants: `latencies` × α + `bytes` × β.
public struct CollectiveCost: Sendable {
    public var latencies = 0.0, bytes = 0.0
    public func seconds(_ link: LinkModel) -> Double { latencies * link.latency + bytes / link.bytesPerSecond }
    static func + (a: CollectiveCost, b: CollectiveCost) -> CollectiveCost {
        CollectiveCost(latencies: a.latencies + b.latencies, bytes: a.bytes + b.bytes)
    }
}

/// What one collective costs among `ranks` hosts, one rank each.
public func collectiveCost(_ call: CollectiveCall, ranks n: Int) -> CollectiveCost {
    guard n > 1 else { return CollectiveCost() }
    let m = Double(call.bytes)
    let rounds = Double(Int.bitWidth - (n - 1).leadingZeroBitCount)  // ⌈log₂ n⌉
    switch call.kind {
    case .allReduce:
        if call.bytes < 10_000 {
            // A group that is no power of two folds its extra ranks into the largest power of two below
            // it and out again: ⌊log₂ N⌋ + 2 steps.
            let steps = n & (n - 1) == 0 ? rounds : rounds - 1 + 2
            return CollectiveCost(latencies: steps, bytes: steps * m)
        }
        return CollectiveCost(latencies: 2 * Double(n - 1), bytes: 2 * Double(n - 1) / Double(n) * m)
    case .allGather: return CollectiveCost(latencies: Double(n - 1), bytes: Double(n - 1) * m)
    case .broadcast: return CollectiveCost(latencies: rounds, bytes: rounds * m)
    case .barrier: return CollectiveCost(latencies: rounds, bytes: 0)
    }
}

/// One row of the prediction.
public struct ScalingPrediction: Sendable {
    public let ranks: Int
    /// The step's collectives: the gradient's, and the rest (statistics, metrics).
    public let gradient: CollectiveCost, other: CollectiveCost
    /// Seconds per step: compute plus the collectives (`overlapped`: the gradient's hidden behind backward).
    public let stepSeconds: Double, overlappedStepSeconds: Double
    public let exchangeSeconds: Double
    public let samplesPerSecond: Double, overlappedSamplesPerSecond: Double
    /// samples/s ÷ (N × one rank's samples/s).
    public let efficiency: Double, overlappedEfficiency: Double
}

/// Predicted throughput at each rank count: a step is `computeSeconds` (measured at one rank) plus its
/// collectives; overlapped, the gradient's collectives beyond `backwardSeconds` only.
public func predictScaling(
    computeSeconds: Double, backwardSeconds: Double, calls: [CollectiveCall], batchPerRank: Int, link: LinkModel,
    ranks: [Int]
) -> [ScalingPrediction] {
    let one = Double(batchPerRank) / computeSeconds
    return ranks.map { n in
        let gradientCost = calls.filter(\.gradient).reduce(CollectiveCost()) { $0 + collectiveCost($1, ranks: n) }
        let otherCost = calls.filter { !$0.gradient }.reduce(CollectiveCost()) { $0 + collectiveCost($1, ranks: n) }
        let (gradient, other) = (gradientCost.seconds(link), otherCost.seconds(link))
        let step = computeSeconds + gradient + other
        let overlapped = computeSeconds + max(0, gradient - backwardSeconds) + other
        let rate = Double(n * batchPerRank) / step
        let overlappedRate = Double(n * batchPerRank) / overlapped
        return ScalingPrediction(
            ranks: n, gradient: gradientCost, other: otherCost, stepSeconds: step, overlappedStepSeconds: overlapped,
            exchangeSeconds: gradient + other, samplesPerSecond: rate, overlappedSamplesPerSecond: overlappedRate,
            efficiency: rate / (Double(n) * one), overlappedEfficiency: overlappedRate / (Double(n) * one))
    }
}
