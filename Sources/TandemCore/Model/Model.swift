// A functional model graph: named inputs, named outputs, layers in
// topological order, one parameter arena and one activation arena sized for
// `maxBatch` samples. Forward runs in order; backward walks the graph in
// reverse from zeroed activation gradients, so every head's gradient
// accumulates into the shared trunk. Not a loss or an optimizer: see Head and Objective.

import CKernels
import Foundation

public final class Model {
    /// Every layer of the graph (each Keras layer call), inputs first, in an order
    /// where a layer follows its inputs.
    public let layers: [Layer]
    /// Every Embedding that looks up token ids, those inside a Block (a KerasHub layer's) too: what the data's
    /// id checks and generated ids follow.
    package var lookups: [Embedding] {
        layers.flatMap { ($0 as? Block)?.parts ?? [$0] }.compactMap { $0 as? Embedding }
    }
    /// What forward and backward run, in order: `layers` after the fusion pass
    /// (an Embedding → recurrent pair is one FusedEmbeddingRecurrent there).
    public let schedule: [Layer]
    package let inputs: [InputLayer]
    /// The output layers, in the order given (e.g. main_output, aux_output); any layer can be one.
    package let outputs: [Layer]
    public let parameters: ParameterStore
    /// The largest batch the activation arena holds.
    package let maxBatch: Int
    /// Rows evaluation forwards together at most (ModelDescription.evaluationRows: 64 unless a
    /// row's activations are very large).
    package var evaluationRows = 64
    private let valueArena: UnsafeMutablePointer<Float>
    private let gradientArena: UnsafeMutablePointer<Float>
    private let hugeArenas: Int32
    /// Bytes of the activation arenas (values and gradients) for `maxBatch`.
    public let activationBytes: Int
    /// Where the rows of the next training forward pass sit in the epoch: the
    /// keys of every dropout mask (Dropout.swift). The training step sets them.
    package let dropoutKeys = DropoutKeys()
    /// The activity penalties' gradient scale and running value (ActivityRegularization.swift).
    /// The training step sets the scale and takes the sums.
    package let activityPenalties = ActivityPenalties()
    /// Whether any layer adds an activity penalty.
    package var hasActivityPenalties: Bool { layers.contains { $0 is ActivityPenalty } }

    /// A graph from `inputs` to `outputs`. Layers that name the same weights
    /// (a Keras layer called more than once) share one tensor in the arena.
    /// With `fuse`, the fusion pass turns an Embedding and every recurrent layer that reads
    /// it into fused layers of the schedule that read the table directly (Fusion.swift).
    /// `frozen`: the layers (weights names) whose weights do not train (Keras's trainable = False).
    package init(
        inputs: [InputLayer], outputs: [Layer], maxBatch: Int, fuse: Bool = true, frozen: Set<String> = []
    ) {
        precondition(maxBatch > 0)
        self.inputs = inputs
        self.outputs = outputs
        self.maxBatch = maxBatch
        // Depth-first post-order from the outputs: a deterministic topological order.
        var order: [Layer] = []
        var seen = Set<ObjectIdentifier>()
        func visit(_ layer: Layer) {
            guard seen.insert(ObjectIdentifier(layer)).inserted else { return }
            layer.inputs.forEach(visit)
            order.append(layer)
        }
        inputs.forEach(visit)
        outputs.forEach(visit)
        layers = order
        let names = order.map(\.name)
        precondition(Set(names).count == names.count, "layer names must be unique")

        // What runs: the graph's order after the fusion pass (Fusion.swift).
        schedule = fuse ? FusionPass.apply(to: order) : order
        if fuse { FusionPass.pairNormalizationActivations(in: order, outputs: outputs) }
        // One tensor per weight name: a shared layer's later calls reuse the first call's.
        var specs: [ParameterSpec] = []
        var named = Set<String>()
        for spec in order.flatMap(\.parameterSpecs) where named.insert(spec.name).inserted {
            // A wrapper's weights sit under its name (Bidirectional's halves: <layer>/<half>).
            let isFrozen = frozen.contains(spec.layer) || frozen.contains { spec.layer.hasPrefix($0 + "/") }
            specs.append(isFrozen ? spec.frozen : spec)
        }
        let store = ParameterStore(specs: specs)
        parameters = store
        for layer in order { layer.bind(parameters: store) }

        for case let layer as RandomLayer in order { layer.bind(keys: dropoutKeys) }
        for case let layer as PenaltyLayer in order { layer.bind(penalties: activityPenalties) }

        var values = 0
        var gradients = 0
        for layer in schedule {
            let size = layer.workspaceSize(batch: maxBatch)
            values += size.values
            gradients += size.gradients
        }
        // Huge pages once the arenas are large enough for them to matter (8 MB).
        let huge: Int32 =
            ProcessInfo.processInfo.environment["TANDEM_NO_HUGE_PAGES"] == nil && values + gradients >= 2 << 20 ? 1 : 0
        hugeArenas = huge
        // ModelDescription.build refuses, by name, arenas larger than the machine's memory.
        guard let v = tandem_allocate_workspace(max(values, 1), huge),
            let g = tandem_allocate_workspace(max(gradients, 1), huge)
        else {
            fatalError("cannot allocate \(4 * (values + gradients) >> 20) MiB of activations for \(maxBatch) rows")
        }
        valueArena = v
        gradientArena = g
        activationBytes = 4 * (values + gradients)
        var cursor = WorkspaceCursor(values: valueArena, gradients: gradientArena)
        for layer in schedule { layer.bind(workspace: &cursor, batch: maxBatch) }

        // The layer outputs' gradient windows, zeroed lazily; the rest of the arena (layers' own
        // scratch) eagerly. An output gradient that is not one whole window of its own (shorter,
        // or sharing one) turns lazy zeroing off.
        let arena = gradientArena..<(gradientArena + gradients)
        var nodes: [Node] = []
        var seenNodes = Set<ObjectIdentifier>()
        for layer in order + schedule where seenNodes.insert(ObjectIdentifier(layer.output)).inserted {
            if let g = layer.output.gradients, arena.contains(g) { nodes.append(layer.output) }
        }
        nodes.sort { $0.gradients < $1.gradients }
        var scratch: [Range<Int>] = []
        var at = 0
        var disjoint = true
        for node in nodes {
            let start = node.gradients - gradientArena
            disjoint =
                disjoint && start >= at && cursor.gradientWindows[node.gradients, default: 0] >= maxBatch * node.width
            if start > at { scratch.append(at..<start) }
            at = max(at, start + maxBatch * node.width)
        }
        if at < gradients { scratch.append(at..<gradients) }
        (lazyWindows, scratchRanges) = disjoint ? (nodes, scratch) : ([], [0..<gradients])
        overwrites = schedule.map { $0 is GradientOverwriting }
        fusedReadsOf = schedule.map { ($0 as? BatchNormalization)?.fused?.output }
        deferring = schedule.map { $0 as? DeferringWeightGradients }
        splits = schedule.map { $0 as? SplitBackward }
        leftWeights.reserveCapacity(schedule.count)
    }

    /// Per schedule entry: the gradient its backward reads besides its own output's (a normalisation's
    /// fused ReLU's), settled before it like its own.
    private let fusedReadsOf: [Node?]

    /// Output gradients zeroed only when needed (Model.forward); empty when zeroing is eager.
    private let lazyWindows: [Node]
    /// The gradient arena's other floats (offsets), zeroed before every backward pass.
    private let scratchRanges: [Range<Int>]
    /// Per schedule entry: whether its backward claims its inputs' gradients (GradientOverwriting).
    private let overwrites: [Bool]

    deinit {
        tandem_free_workspace(valueArena, hugeArenas)
        tandem_free_workspace(gradientArena, hugeArenas)
    }

    public func layer(named name: String) -> Layer? { layers.first { $0.name == name } }
    package func input(named name: String) -> InputLayer? { inputs.first { $0.name == name } }
    public func output(named name: String) -> Layer? { outputs.first { $0.name == name } }

    /// Runs every layer forward on the first `batch` rows of the input buffers,
    /// and readies the activation gradients so losses can then write theirs.
    /// `training` is false for evaluate and predict.
    public func forward(batch: Int, training: Bool = true) {
        precondition(batch <= maxBatch)
        clearGradients(batch: batch)
        for layer in schedule { layer.forward(batch: batch, training: training) }
    }

    /// Forward through `schedule[0...last]` only (reproducible mode's statistics passes).
    public func forward(batch: Int, training: Bool, through last: Int) {
        clearGradients(batch: batch)
        for layer in schedule[...last] { layer.forward(batch: batch, training: training) }
    }

    /// The backward pass ACCUMULATES into the activation gradients, so they must start at zero.
    /// Zeroing the whole arena every step was a tenth of a convolutional step (a pass over
    /// every activation's gradient); instead the outputs' gradients (the losses add into them)
    /// and the layers' scratch are zeroed here, and every other layer output's gradient is
    /// marked pending: zeroed just before the first layer that adds to it runs, or written
    /// outright by a layer that overwrites (GradientOverwriting) — no pass of its own at all.
    private func clearGradients(batch: Int) {
        for r in scratchRanges { (gradientArena + r.lowerBound).update(repeating: 0, count: r.count) }
        for node in lazyWindows { node.gradientPending = true }
        for layer in outputs { settle(layer.output, batch: batch) }
    }

    /// Zeroes a pending gradient's `batch` rows.
    private func settle(_ node: Node, batch: Int) {
        guard node.gradientPending else { return }
        node.gradients.update(repeating: 0, count: batch * node.width)
        node.gradientPending = false
    }

    /// Schedule entry k's backward, its gradients settled first.
    private func backward(_ k: Int, batch: Int) {
        settleForBackward(k, batch: batch)
        schedule[k].backward(batch: batch)
    }

    /// Settles what schedule entry k's backward reads and adds to: its own output's gradient (no reader
    /// wrote it: zeros), and its inputs' unless it claims them itself.
    private func settleForBackward(_ k: Int, batch: Int) {
        let layer = schedule[k]
        settle(layer.output, batch: batch)
        if let read = fusedReadsOf[k] { settle(read, batch: batch) }
        if !overwrites[k] { for input in layer.inputs where input.wantsGradient { settle(input.output, batch: batch) } }
    }

    /// Set by the training step when its collectives cross ranks: backward then leaves the convolutions'
    /// weight gradients until the next normalisation has started its global sums, and makes them while
    /// the sums travel — each rank's core busy instead of waiting for the slower rank at every
    /// normalisation. The same arithmetic in another order: a weight's gradient still takes its calls'
    /// additions in schedule order (all its calls leave them, or none does).
    package var overlapsCollectives = false
    /// Per schedule entry: the layer as one that can leave its weight gradients, or that can split its backward.
    private let deferring: [DeferringWeightGradients?]
    private let splits: [SplitBackward?]
    /// The schedule entries whose weight gradients wait, in the order they were left.
    private var leftWeights: [Int] = []

    /// Schedule entry k's backward, overlapping collectives with the weight gradients left so far.
    private func backwardOverlapping(_ k: Int, batch: Int) {
        settleForBackward(k, batch: batch)
        if let layer = deferring[k] {
            if layer.backwardLeavingWeights(batch: batch) { leftWeights.append(k) }
        } else if let layer = splits[k] {
            guard layer.beginBackward(batch: batch) else { return }
            makeLeftWeights(batch: batch)
            layer.finishBackward(batch: batch)
        } else {
            schedule[k].backward(batch: batch)
        }
    }

    private func makeLeftWeights(batch: Int) {
        for k in leftWeights { deferring[k]!.backwardWeights(batch: batch) }
        leftWeights.removeAll(keepingCapacity: true)
    }

    /// After a backward pass: the inputs' gradients (the gradient checks read them) are complete.
    private func settleInputs(batch: Int) {
        for input in inputs where input.wantsGradient { settle(input.output, batch: batch) }
    }

    /// Backward through `schedule[first...]` only, the last layer first; the gradient of
    /// `schedule[first − 1]`'s output is complete after it (reproducible mode reads it).
    package func backward(batch: Int, downTo first: Int) {
        let runs = runsBackward
        for k in schedule.indices[first...].reversed() where runs[k] { backward(k, batch: batch) }
        if first > 0 { settle(schedule[first - 1].output, batch: batch) }
        settleInputs(batch: batch)
    }

    /// Per schedule entry: whether its backward runs. A layer with no trainable weight in it or above it (a
    /// frozen backbone's) makes no gradient anyone uses, and is skipped — unless an input above it wants its
    /// gradient (the gradient checks), or it is a BatchNormalization on batch statistics, whose backward's sums
    /// reproducible mode reads. Decided at the first backward (the inputs' wishes are set by then).
    package var runsBackward: [Bool] {
        if let decided { return decided }
        var above: [ObjectIdentifier: Bool] = [:]
        for layer in schedule {
            let own = layer.parameterSpecs.contains { parameters.view($0.name)?.spec.trainable == true }
            let input = (layer as? InputLayer)?.wantsGradient == true
            let value = own || input || layer.inputs.contains { above[ObjectIdentifier($0)] == true }
            above[ObjectIdentifier(layer)] = value
            if let fused = layer as? FusedEmbeddingRecurrent { above[ObjectIdentifier(fused.recurrentLayer)] = value }
        }
        let runs = schedule.map { layer in
            above[ObjectIdentifier(layer)] == true || (layer as? BatchNormalization).map { !$0.frozen } == true
        }
        decided = runs
        return runs
    }
    private var decided: [Bool]?

    /// Backpropagates from the output gradients (or logit gradients) the losses
    /// wrote after `forward`, ACCUMULATING into the parameter gradient arena.
    package func backward(batch: Int) { backward(batch: batch) { _ in } }

    /// The same, calling `finished(k)` after `schedule[k]`'s backward (where the
    /// overlapped exchange starts the sums of the gradients that are final).
    /// With overlapsCollectives, a layer whose weight gradients wait holds back its `finished` call and every
    /// later one (a bucket may hold its tensors) until they are made: the same calls, in the same order, later.
    package func backward(batch: Int, finished: (Int) throws -> Void) rethrows {
        let runs = runsBackward
        var held: Int?  // the first schedule entry whose `finished` call waits
        for k in schedule.indices.reversed() {
            if runs[k] {
                if overlapsCollectives { backwardOverlapping(k, batch: batch) } else { backward(k, batch: batch) }
            }
            if !leftWeights.isEmpty {
                held = held ?? k
                continue
            }
            if let first = held { for j in stride(from: first, to: k, by: -1) { try finished(j) } }
            held = nil
            try finished(k)
        }
        makeLeftWeights(batch: batch)
        if let first = held { for j in stride(from: first, through: 0, by: -1) { try finished(j) } }
        settleInputs(batch: batch)
    }
}
