// Embedding → LSTM fused over the batch's UNIQUE tokens. The input projection
// is linear, so for the n distinct ids of a batch (n ≤ min(vocab, B·T)):
//   forward   P[n, G] = E[ids] · W + b, then gates[b, t] = P[slot(b, t)]
//   backward  S[n, G] = Σ over occurrences of dGates;  dW += E[ids]ᵀ · S;
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
        slot = .allocate(capacity: vocabulary); slot.initialize(repeating: -1, count: vocabulary)
        unique = .allocate(capacity: max(1, min(vocabulary, occurrences)))
        occurrence = .allocate(capacity: max(1, occurrences))
    }
    deinit { slot.deallocate(); unique.deallocate(); occurrence.deallocate() }
}

extension LSTM {
    /// Reads `embedding`'s table directly; the embedding layer becomes a no-op
    /// (called by the fusion pass, Fusion.swift).
    func fuse(with embedding: Embedding) {
        self.embedding = embedding
        embedding.fused = true
    }

    private var maxUnique: (Int) -> Int {
        { batch in min(self.embedding!.vocabulary, batch * self.steps) }
    }

    func fusedWorkspaceSize(batch: Int) -> Int {
        guard embedding != nil else { return 0 }
        let n = maxUnique(batch)
        return n * inputWidth + n * 4 * units  // rows [n, D] (then their gradient), P then S [n, G]
    }

    func bindFused(workspace: inout WorkspaceCursor, batch: Int) {
        guard let embedding else { return }
        let n = maxUnique(batch)
        fusedRows = workspace.take(n * inputWidth)
        // P is dead once the gates hold it, so the backward's S reuses its memory.
        fusedProjection = workspace.take(n * 4 * units)
        fusedSums = fusedProjection
        fusedBuffers = FusedEmbeddingBuffers(vocabulary: embedding.vocabulary, occurrences: batch * steps)
    }

    /// Fills `gates` with x·W + b for every (b, t), computing each distinct token once.
    func projectUniqueTokens(batch: Int) {
        let embedding = embedding!, f = fusedBuffers!
        let ids = embedding.source.tokens!, table = embedding.store.value(embedding.table)
        let D = inputWidth, G = 4 * units, occurrences = batch * steps
        // Distinct ids in ascending order (a pass over the vocabulary beats a sort),
        // so on one rank they line up with the compact gradient's slots.
        for o in 0..<occurrences { f.slot[Int(ids[o])] = 0 }
        var n = 0
        for id in 0..<embedding.vocabulary where f.slot[id] == 0 {
            f.slot[id] = Int32(n); f.unique[n] = Int32(id); n += 1
        }
        for o in 0..<occurrences { f.occurrence[o] = f.slot[Int(ids[o])] }
        for k in 0..<n { f.slot[Int(f.unique[k])] = -1 }
        f.count = n
        let rows = fusedRows!, projection = fusedProjection!
        for k in 0..<n { (rows + k * D).update(from: table + Int(f.unique[k]) * D, count: D) }
        gemm(.none, .none, m: n, n: G, k: D, a: rows, lda: D, b: store.value(kernel), ldb: G, beta: 0, c: projection, ldc: G)
        addBias(store.value(bias), to: projection, rows: n, columns: G, stride: G)
        for o in 0..<occurrences { (gates + o * G).update(from: projection + Int(f.occurrence[o]) * G, count: G) }
    }

    /// Kernel, bias and embedding gradients from `dGates`, per distinct token.
    /// With `tableRowSums` set, the table's gradient is left factored: each
    /// distinct token's S row is added at `base + slot[id]·G`, and dE = S·Wᵀ is
    /// formed later, block by block, by whoever reads it (`tableGradientRows`).
    func backwardUniqueTokens(batch: Int) {
        let embedding = embedding!, f = fusedBuffers!
        let D = inputWidth, G = 4 * units, n = f.count, occurrences = batch * steps
        let sums = fusedSums!, rows = fusedRows!
        sums.update(repeating: 0, count: n * G)
        for o in 0..<occurrences {
            let to = sums + Int(f.occurrence[o]) * G, from = dGates + o * G
            for j in 0..<G { to[j] += from[j] }
        }
        gemm(.transposed, .none, m: D, n: G, k: n, a: rows, lda: D, b: sums, ldb: G, beta: 1, c: store.gradient(kernel), ldc: G)
        addColumnSums(sums, rows: n, columns: G, stride: G, into: store.gradient(bias))
        if let compact = tableRowSums {
            for k in 0..<n {
                let to = compact.base + Int(compact.slot[Int(f.unique[k])]) * G, from = sums + k * G
                for j in 0..<G { to[j] += from[j] }
            }
            return
        }
        // dE[ids] += S·Wᵀ in the same blocks as the factored path, so both give the same bits.
        // The gathered rows are no longer needed: their first block holds each block of dE.
        let dTable = embedding.store.gradient(embedding.table)
        for first in stride(from: 0, to: n, by: LSTM.tableBlockRows) {
            let count = min(LSTM.tableBlockRows, n - first)
            tableGradientRows(sums + first * G, count: count, into: rows)
            for k in 0..<count {
                let to = dTable + Int(f.unique[first + k]) * D, from = rows + k * D
                for j in 0..<D { to[j] += from[j] }
            }
        }
    }

    /// Rows of the table gradient formed per block: dE is computed `tableBlockRows`
    /// rows at a time, so a block (512 KB at D = 512) stays in L2 for whoever
    /// consumes it. Measured for S·Wᵀ over 4700 rows: 64 rows 82–105 GFLOP/s,
    /// 128 rows 93–122, 256 rows 106–134, 512 rows 108–142 (B is repacked per block).
    static let tableBlockRows = 256

    /// dE[count, D] = S[count, G] · Wᵀ with W this LSTM's (current) input kernel.
    func tableGradientRows(_ sums: UnsafePointer<Float>, count: Int, into dE: UnsafeMutablePointer<Float>) {
        let D = inputWidth, G = 4 * units
        gemm(.none, .transposed, m: count, n: D, k: G, a: sums, lda: G, b: store.value(kernel), ldb: G, beta: 0, c: dE, ldc: D)
    }

    /// The largest |w| of the input kernel (bounds |dE| from |S|).
    func largestKernelMagnitude() -> Float {
        let w = store.value(kernel)
        var top: Float = 0
        for i in 0..<kernel.count { top = max(top, abs(w[i])) }
        return top
    }
}
