// What `tandem train` prints: the start-up report (ranks, hosts, MPI and BLAS, data, model,
// optimizer, labels, notes) on stderr, and after training the per-head, monitor, stop and
// summary lines on stdout. Rank 0 calls these.

import Foundation
import Tandem
import TandemMPI

/// What the start-up report says that the trainer does not know.
struct StartFacts {
    let model: String
    let micro: Int?
    let resumed: Bool
    let archiveIterations: Int?
    let notes: [String]
}

func printStartup(comm: Communicator, hosts: [String], trainer: Trainer, facts: StartFacts) {
    let step = trainer.step
    let model = step.model
    let heads = step.heads
    let batch = trainer.options.batchSize
    let trainRows = trainer.trainRows
    let dataset = trainer.data
    let position = trainer.position
    var line = startupReport(comm: comm, hosts: hosts)
    if let kernels = model.convolutionKernels { line += "\n        convolutions: \(kernels)" }
    line += "\n        data: \(trainRows.count) training samples"
    if let validation = trainer.validation { line += ", \(validation.rows.count) validation" }
    let slices = (0..<comm.size).map { shard(count: batch, rank: $0, size: comm.size).count }
    line +=
        "; global batch \(batch), \(slices.min()!)\(slices.min()! == slices.max()! ? "" : "–\(slices.max()!)") per rank"
    line +=
        "\n        model: \(facts.model) (\(model.layers.count) layers, \(heads.count) head\(heads.count == 1 ? "" : "s")); "
    line += "\(model.parameters.count) parameters; \(step.optimizer.config.summary)"
    if let n = facts.archiveIterations { line += "; continuing the archive's optimizer state at iteration \(n)" }
    if dataset.hasMissingLabels || heads.contains(where: { $0.reduction != .batch }) {
        let counts = dataset.labels(rows: trainRows).labelled
        line +=
            "\n        labels: "
            + heads.indices.map { h in
                "\(heads[h].output) \(Int(counts[h]))/\(trainRows.count) labelled, loss \(reductionText(heads[h].reduction))"
            }.joined(separator: "; ")
    }
    for note in facts.notes { line += "\n        note: \(note)" }
    if let micro = facts.micro { line += "; reproducible (micro-batch \(micro))" }
    if facts.resumed { line += "\n        resuming at epoch \(position.epoch + 1), step \(position.step)" }
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

func printEnd(_ trainer: Trainer, history: [EpochFigures], started: Date, out: String) {
    let step = trainer.step
    let heads = step.heads
    if let p = step.surgery {
        print(
            p.diagnostics.shared.isEmpty
                ? "pcgrad: no tensor is reached by more than one head; nothing to project"
                : "pcgrad: heads conflicted on the shared tensors in \(p.conflictingSteps) of \(p.steps) steps (\(p.projections) projections)"
        )
    }
    if let d = trainer.diagnostics {
        print(d.shared.isEmpty ? "per-head diagnostics: no tensor is reached by more than one head" : d.summary())
    }
    if let monitor = trainer.options.monitor, let state = trainer.position.monitor {
        var line =
            trainer.stoppedEarlyAfter.map {
                "early stop after epoch \($0): \(monitor.expression.text) did not improve for \(monitor.patience!) epoch\(monitor.patience! == 1 ? "" : "s"); "
            } ?? ""
        line +=
            "best \(monitor.expression.text) = \(state.best.map { String(format: "%.6g", $0) } ?? "n/a") at epoch \(state.bestEpoch) (\(out)/best.keras)"
        if monitor.restoreBest && state.bestEpoch > 0 {
            line += "; the final weights are that epoch's (--restore-best)"
        }
        print(line)
    }
    if trainer.stoppedOnRequest {
        var words = CommandLine.arguments
        for flag in ["--resume", "--init"] {
            while let i = words.firstIndex(of: flag), i + 1 < words.count { words.removeSubrange(i...(i + 1)) }
        }
        words += ["--resume", out]
        print(
            "stopped on request after step \(trainer.position.step) (epoch \(trainer.position.epoch + 1)); checkpoint written to \(out)/checkpoint.safetensors"
        )
        print("resume with: \(words.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " "))")
        return
    }
    if let last = history.last {
        var summary =
            "done: \(history.count) epoch\(history.count == 1 ? "" : "s") in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; final loss \(String(format: "%.4f", last.loss))"
        for (h, head) in heads.enumerated() {
            summary += ", \(head.output) \(String(format: "%.4f", last.headLoss[h]))"
            if head.accuracy != nil { summary += " (acc \(String(format: "%.3f", last.headAccuracy[h])))" }
        }
        summary += "\nper step: \(step.timings.perStepDescription)"
        let images = trainer.data.imageColumns
        if !images.isEmpty {
            // This rank's figures (rank 0 reports): decoding runs beside the step, on a thread per image input.
            let figures = images.map(\.figures)
            let decoded = figures.reduce(0) { $0 + $1.decoded }
            let decoding = figures.reduce(0) { $0 + $1.decodeSeconds }
            let waited = figures.reduce(0) { $0 + $1.waitSeconds }
            let stepSeconds =
                step.timings.forward + step.timings.backward + step.timings.exchange + step.timings.optimizer
            summary += String(
                format:
                    "\nimage files (rank 0): %d decoded at %.0f images/s a decode thread; the steps waited for them %.1f%% of their time",
                decoded, decoding > 0 ? Double(decoded) / decoding : 0, stepSeconds > 0 ? 100 * waited / stepSeconds : 0
            )
        }
        summary +=
            "\nweights: \(out)/weights.safetensors  model: \(out)/model.keras  checkpoint: \(out)/checkpoint.safetensors  metrics: \(out)/metrics.jsonl"
        print(summary)
    }
}

/// This machine's host name (its UTS name: each namespace host has its own).
func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, 255)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// "tandem: 4 ranks on 2 hosts (a: 2, b: 2); Open MPI v4.1.4; 1 thread per rank; matrix products: OpenBLAS 0.3.21,
/// Cooperlake kernels for every product".
func startupReport(comm: Communicator, hosts: [String]) -> String {
    var order: [String] = []
    var counts: [String: Int] = [:]
    for h in hosts {
        if counts[h] == nil { order.append(h) }
        counts[h, default: 0] += 1
    }
    let library = (comm as? MPICommunicator)?.libraryVersion ?? "no MPI (local)"
    let threads = blasThreads()
    return
        "tandem: \(comm.size) rank\(comm.size == 1 ? "" : "s") on \(order.count) host\(order.count == 1 ? "" : "s") ("
        + order.map { "\($0): \(counts[$0]!)" }.joined(separator: ", ")
        + "); \(library); \(threads) thread\(threads == 1 ? "" : "s") per rank; matrix products: \(GEMMKernels.description)"
}

/// How a head's loss over a batch is reduced, for the start-up report.
func reductionText(_ r: Head.Reduction) -> String {
    switch r {
    case .batch: "÷ batch size"
    case .labeled: "÷ labelled weight"
    case .sum: "summed over the batch"
    }
}
