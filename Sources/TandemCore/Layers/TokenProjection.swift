// Embedding → recurrent layer (LSTM, GRU, SimpleRNN) fused over the batch's
// UNIQUE tokens. The input projection is linear, so for the n distinct ids of
// a batch (n ≤ min(vocab, B·T)), with G the layer's gate columns:
//   forward   P[n, G] = E[ids] · W + b, then xProj[b, t] = P[slot(b, t)]
//             (the general recurrent layer reads P[slot(b, t)] in place)
//   backward  S[n, G] = Σ over occurrences of dxProj;  dW += E[ids]ᵀ · S;
//             db += Σ S;  dE[ids] += S · Wᵀ   (each row of dE once; or S is
//             kept per row and dE formed later in blocks — `tableRowSums`)
// The three big products shrink from B·T rows to n rows, and the [B, T, D]
// embedding output and its gradient never exist. Same mathematics as the
// unfused pair; only the float summation order differs.

/// Scratch of the fused path, sized for B·T occurrences.
final class FusedEmbeddingBuffers {
    /// slot[id] = unique index of id in this batch, or −1 (kept all −1 between calls).
    let slot: UnsafeMutablePointer<Int32>
    /// unique ids [n] and each occurrence's unique index [B·T].
    let unique: UnsafeMutablePointer<Int32>, occurrence: UnsafeMutablePointer<Int32>
    var count = 0
    init(vocabulary: Int, occurrences: Int) {
        slot = .allocate(capacity: vocabulary)
        slot.initialize(repeating: -1, count: vocabulary)
        unique = .allocate(capacity: max(1, min(vocabulary, occurrences)))
        occurrence = .allocate(capacity: max(1, occurrences))
    }
    deinit {
        slot.deallocate()
        unique.deallocate()
        occurrence.deallocate()
    }
}

/// A recurrent layer whose input projection x·W (+ b) can run over distinct tokens.
package protocol TokenFusable: Layer {
    var source: Layer { get }
    var steps: Int { get }
    var inputWidth: Int { get }
    /// Columns of the input projection (4U, 3U or U).
    var gateColumns: Int { get }
    /// The input kernel [D, G] and the input bias (its first G floats), if any.
    var inputKernel: TensorView { get }
    var inputBias: TensorView? { get }
    var parameterStore: ParameterStore { get }
    /// Set by the fusion pass: the layer then reads token ids through it.
    var tokens: TokenProjection? { get set }
    /// The Keras class, for the path description.
    var kerasClass: String { get }
    /// Whether this layer can read its input through a TokenProjection.
    var canFuse: Bool { get }
}

extension TokenFusable {
    /// The embedding this layer reads through directly, when fused.
    package var embedding: Embedding? { tokens?.embedding }

    /// Reads `embedding`'s table directly; the embedding layer becomes a no-op
    /// (called by the fusion pass, Fusion.swift).
    func fuse(with embedding: Embedding) {
        tokens = TokenProjection(embedding: embedding, layer: self)
        embedding.fused = true
    }

    /// dE[count, D] = S[count, G] · Wᵀ with W this layer's (current) input kernel.
    package func tableGradientRows(_ sums: UnsafePointer<Float>, count: Int, into dE: UnsafeMutablePointer<Float>) {
        let D = inputWidth
        let G = gateColumns
        gemm(
            .none, .transposed, m: count, n: D, k: G, a: sums, lda: G, b: parameterStore.value(inputKernel), ldb: G,
            beta: 0, c: dE, ldc: D)
    }

    /// The largest |w| of the input kernel (bounds |dE| from |S|).
    package func largestKernelMagnitude() -> Float {
        let w = parameterStore.value(inputKernel)
        var top: Float = 0
        for i in 0..<inputKernel.count { top = max(top, abs(w[i])) }
        return top
    }
}

/// Rows of the table gradient formed per block: dE is computed `tableBlockRows`
/// rows at a time, so a block (512 KB at D = 512) stays in L2 for whoever
/// consumes it. Measured for S·Wᵀ over 4700 rows: 64 rows 82–105 GFLOP/s,
/// 128 rows 93–122, 256 rows 106–134, 512 rows 108–142 (B is repacked per block).
package let tableBlockRows = 256

/// The fused path's state for one recurrent layer.
package final class TokenProjection {
    package let embedding: Embedding
    unowned let layer: TokenFusable
    var buffers: FusedEmbeddingBuffers?
    var rows: UnsafeMutablePointer<Float>?, projection: UnsafeMutablePointer<Float>?, sums: UnsafeMutablePointer<Float>?
    /// When set, backward leaves the table's gradient factored: token `id`'s summed
    /// input-projection gradient S (G wide) is added at `base + slot[id]·G`, and no
    /// table row is written.
    package var tableRowSums: (base: UnsafeMutablePointer<Float>, slot: UnsafePointer<Int32>)?

    init(embedding: Embedding, layer: TokenFusable) {
        self.embedding = embedding
        self.layer = layer
    }

    private func maxUnique(_ batch: Int) -> Int { min(embedding.vocabulary, batch * layer.steps) }

    func workspaceSize(batch: Int) -> Int {
        let n = maxUnique(batch)
        return n * layer.inputWidth + n * layer.gateColumns  // rows [n, D] (then their gradient), P then S [n, G]
    }

    func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let n = maxUnique(batch)
        rows = workspace.take(n * layer.inputWidth)
        // P is dead once xProj holds it, so the backward's S reuses its memory.
        projection = workspace.take(n * layer.gateColumns)
        sums = projection
        buffers = FusedEmbeddingBuffers(vocabulary: embedding.vocabulary, occurrences: batch * layer.steps)
    }

    /// Fills `xProj` [B·T, G] with x·W + b for every (b, t), computing each distinct token once.
    func project(batch: Int, into xProj: UnsafeMutablePointer<Float>) {
        projectDistinct(batch: batch)
        let f = buffers!
        let G = layer.gateColumns
        let projection = projection!
        for o in 0..<batch * layer.steps {
            (xProj + o * G).update(from: projection + Int(f.occurrence[o]) * G, count: G)
        }
    }

    /// P[n, G] = E[ids] · W + b over the batch's n distinct ids, and each occurrence's slot:
    /// occurrence o's (o = b·T + t) row of x·W + b is `rows + slot[o]·G`, read in place by a
    /// layer that keeps the projection apart from its gates (no [B·T, G] copy).
    @discardableResult
    func projectDistinct(batch: Int) -> (rows: UnsafePointer<Float>, slot: UnsafePointer<Int32>) {
        let f = buffers!
        let store = layer.parameterStore
        let ids = embedding.source.tokens!
        let table = embedding.store.value(embedding.table)
        let D = layer.inputWidth
        let G = layer.gateColumns
        let occurrences = batch * layer.steps
        // Distinct ids in ascending order (a pass over the vocabulary beats a sort),
        // so on one rank they line up with the compact gradient's slots.
        for o in 0..<occurrences { f.slot[Int(ids[o])] = 0 }
        var n = 0
        for id in 0..<embedding.vocabulary where f.slot[id] == 0 {
            f.slot[id] = Int32(n)
            f.unique[n] = Int32(id)
            n += 1
        }
        for o in 0..<occurrences { f.occurrence[o] = f.slot[Int(ids[o])] }
        for k in 0..<n { f.slot[Int(f.unique[k])] = -1 }
        f.count = n
        let rows = rows!
        let projection = projection!
        for k in 0..<n { (rows + k * D).update(from: table + Int(f.unique[k]) * D, count: D) }
        gemm(
            .none, .none, m: n, n: G, k: D, a: rows, lda: D, b: store.value(layer.inputKernel), ldb: G, beta: 0,
            c: projection, ldc: G)
        if let bias = layer.inputBias { addBias(store.value(bias), to: projection, rows: n, columns: G, stride: G) }
        return (UnsafePointer(projection), UnsafePointer(f.occurrence))
    }

    /// Kernel, bias and embedding gradients from `dXProj` [B·T, G], per distinct token.
    /// With `tableRowSums` set, the table's gradient is left factored: each
    /// distinct token's S row is added at `base + slot[id]·G`, and dE = S·Wᵀ is
    /// formed later, block by block, by whoever reads it (`tableGradientRows`).
    func backward(batch: Int, from dXProj: UnsafePointer<Float>) {
        let f = buffers!
        let store = layer.parameterStore
        let D = layer.inputWidth
        let G = layer.gateColumns
        let n = f.count
        let occurrences = batch * layer.steps
        let sums = sums!
        let rows = rows!
        sums.update(repeating: 0, count: n * G)
        for o in 0..<occurrences {
            let to = sums + Int(f.occurrence[o]) * G
            let from = dXProj + o * G
            for j in 0..<G { to[j] += from[j] }
        }
        gemm(
            .transposed, .none, m: D, n: G, k: n, a: rows, lda: D, b: sums, ldb: G, beta: 1,
            c: store.gradient(layer.inputKernel), ldc: G)
        if let bias = layer.inputBias {
            addColumnSums(sums, rows: n, columns: G, stride: G, into: store.gradient(bias))
        }
        if let compact = tableRowSums {
            for k in 0..<n {
                let to = compact.base + Int(compact.slot[Int(f.unique[k])]) * G
                let from = sums + k * G
                for j in 0..<G { to[j] += from[j] }
            }
            return
        }
        // dE[ids] += S·Wᵀ in the same blocks as the factored path, so both give the same bits.
        // The gathered rows are no longer needed: their first block holds each block of dE.
        let dTable = embedding.store.gradient(embedding.table)
        for first in stride(from: 0, to: n, by: tableBlockRows) {
            let count = min(tableBlockRows, n - first)
            layer.tableGradientRows(sums + first * G, count: count, into: rows)
            for k in 0..<count {
                let to = dTable + Int(f.unique[first + k]) * D
                let from = rows + k * D
                for j in 0..<D { to[j] += from[j] }
            }
        }
    }
}
