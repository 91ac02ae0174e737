// `tandem bench --scaling`: predicted samples/s and efficiency at 2 … 64 ranks (one per host) from a step's
// measured compute time and the collectives it makes, over a link of given latency and bandwidth.
//
// The collectives are recorded from one real step run through `RecordingCommunicator` (rank 0 of a
// pretend group of two: every call is recorded and otherwise does nothing, so the step runs on its own
// shard). Their cost follows what Open MPI 4.1's tuned component runs: its fixed decision picks an
// allreduce algorithm by group and message size (recursive doubling, the ring, its segmented form or
// Rabenseifner's reduce-scatter + allgather), each costed as latencies × α + link bytes × β; an allgather is
// a ring, (N−1)(α + mβ). Compute per rank at a fixed per-rank batch does not
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

/// The allreduce algorithms Open MPI's tuned component chooses among (its numbering).
public enum AllReduceAlgorithm: Int, Sendable {
    case nonoverlapping = 2
    case recursiveDoubling = 3
    case ring = 4
    case segmentedRing = 5
    case rabenseifner = 6

    /// Open MPI 4.1's fixed decision for a commutative sum of `bytes` among `n` ranks
    /// (coll_tuned_decision_fixed.c, the switch points its developers measured with ompi-collectives-tuning).
    public static func openMPI(bytes b: Int, ranks n: Int) -> AllReduceAlgorithm {
        switch n {
        case ..<4:
            if b < 8 { return .ring }
            if b < 4096 { return .recursiveDoubling }
            if b < 8192 { return .ring }
            if b < 16384 { return .recursiveDoubling }
            if b < 65536 { return .ring }
            return b < 262_144 ? .segmentedRing : .rabenseifner
        case ..<8: return b < 16 ? .ring : b < 8192 ? .recursiveDoubling : .rabenseifner
        case ..<16: return b < 8192 ? .recursiveDoubling : .rabenseifner
        case ..<32: return b < 64 ? .segmentedRing : b < 4096 ? .recursiveDoubling : .rabenseifner
        case ..<64: return b < 128 ? .segmentedRing : .rabenseifner
        case ..<128: return b < 262_144 ? .recursiveDoubling : .rabenseifner
        default: return b < 131_072 ? .nonoverlapping : b < 262_144 ? .recursiveDoubling : .rabenseifner
        }
    }

    /// Its cost for m bytes among n ranks (Open MPI's base implementations). p is the largest power of two
    /// ≤ n: the other n − p ranks are folded in before and out after.
    public func cost(bytes: Int, ranks n: Int) -> CollectiveCost {
        let m = Double(bytes)
        let log2p = Double(Int.bitWidth - 1 - n.leadingZeroBitCount)
        let p = Double(1 << Int(log2p))
        let folded = Double(n) != p
        switch self {
        case .recursiveDoubling:  // whole vectors each round; the extra ranks' vectors in and the result out
            let rounds = log2p + (folded ? 2 : 0)
            return CollectiveCost(latencies: rounds, bytes: rounds * m)
        case .ring, .segmentedRing:  // reduce-scatter then allgather around the ring, m/n per step
            return CollectiveCost(latencies: 2 * Double(n - 1), bytes: 2 * Double(n - 1) / Double(n) * m)
        case .rabenseifner:
            // Recursive halving then doubling among p. Folding, on the critical path: pairs swap half
            // vectors, one sends its reduced half to the other, and the result goes back whole at the end
            // (three dependent steps: half, half, whole).
            var cost = CollectiveCost(latencies: 2 * log2p, bytes: 2 * (p - 1) / p * m)
            if folded { cost = cost + CollectiveCost(latencies: 3, bytes: 2 * m) }
            return cost
        case .nonoverlapping:  // a binomial reduce, then a binomial broadcast
            let rounds = Double(Int.bitWidth - (n - 1).leadingZeroBitCount)
            return CollectiveCost(latencies: 2 * rounds, bytes: 2 * rounds * m)
        }
    }
}

/// What one collective costs among `ranks` hosts, one rank each.
public func collectiveCost(_ call: CollectiveCall, ranks n: Int) -> CollectiveCost {
    guard n > 1 else { return CollectiveCost() }
    let m = Double(call.bytes)
    let rounds = Double(Int.bitWidth - (n - 1).leadingZeroBitCount)  // ⌈log₂ n⌉
    switch call.kind {
    case .allReduce: return AllReduceAlgorithm.openMPI(bytes: call.bytes, ranks: n).cost(bytes: call.bytes, ranks: n)
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
