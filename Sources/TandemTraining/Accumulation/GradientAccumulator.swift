// How the rows a rank computes are cut into chunks, and how the chunks' figures and gradients
// are summed, across chunks and then across ranks:
//   • FloatAccumulator       one chunk (the rank's slice of the global batch); its figures in
//                            one small Double allreduce, its gradient through the exchange;
//   • FixedPointAccumulator  reproducible mode: canonical micro-batches, each gradient rounded
//                            once to 64-bit fixed point and summed exactly, figures and
//                            gradient in ONE integer allreduce (FixedPointAccumulator.swift).

import TandemCore
import TandemKeras

protocol GradientAccumulator: AnyObject {
    /// This rank's rows of a global batch of `B`, as positions in it, in the order they run.
    func chunks(globalBatch B: Int) -> [Range<Int>]
    /// Before the chunks run (reproducible mode's BatchNormalization statistics).
    func begin(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset) throws
    /// Starts a pass over the chunks (again after `passIsComplete` said no).
    func startPass()
    /// A chunk's figures, laid out as the objective's `layout`, after its forward.
    func addFigures(_ figures: UnsafePointer<Double>)
    /// A chunk's gradient, which its backward just wrote into the arena.
    func addGradient()
    /// After the last chunk: false when the pass must run again (the fixed point's bound).
    func passIsComplete() throws -> Bool
    /// The step's figures summed across ranks, without the gradient (an accumulating step).
    func combineFigures() throws
    /// The step's ONE exchange: the figures and the arena summed across ranks.
    func combine(_ exchange: GradientExchange) throws
    /// The i-th figure after `combine`.
    func figure(_ i: Int) -> Double
}

/// The ordinary step: the rank's slice in one chunk, its figures in Double, its gradient in Float.
final class FloatAccumulator: GradientAccumulator {
    let communicator: Communicator
    private var figures: [Double]

    init(communicator: Communicator, layout: FigureLayout) {
        self.communicator = communicator
        figures = [Double](repeating: 0, count: layout.count)
    }

    func chunks(globalBatch B: Int) -> [Range<Int>] {
        [shard(count: B, rank: communicator.rank, size: communicator.size)]
    }
    func begin(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset) throws {}
    func startPass() { figures.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
    func addFigures(_ f: UnsafePointer<Double>) { for i in figures.indices { figures[i] += f[i] } }
    func addGradient() {}
    func passIsComplete() throws -> Bool { true }

    func combineFigures() throws {
        try figures.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
    }

    func combine(_ exchange: GradientExchange) throws {
        try combineFigures()
        try exchange.combine()
    }

    func figure(_ i: Int) -> Double { figures[i] }
}
