// Progress for people: one line per step on a terminal (rewritten in place),
// a line every ~10% of an epoch otherwise, and a summary line per epoch.

import Foundation

final class Progress {
    let enabled: Bool
    private let interactive: Bool
    private var lastPrint = Date.distantPast

    init(enabled: Bool) {
        self.enabled = enabled
        interactive = isatty(STDERR_FILENO) != 0
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    func step(epoch: Int, epochs: Int, batch: Int, batches: Int, sums: [Double], heads: [String],
              learningRate: Float, samplesPerSecond: Double, remaining: Double, weights: [Double]? = nil) {
        guard enabled else { return }
        let now = Date()
        let tenth = max(1, batches / 10)
        if interactive {
            guard now.timeIntervalSince(lastPrint) > 0.1 || batch == batches else { return }
        } else {
            guard batch % tenth == 0 && batch != batches else { return }
        }
        lastPrint = now
        let n = max(sums[2 * heads.count], 1)
        var line = "epoch \(epoch)/\(epochs)  step \(batch)/\(batches)  loss \(fmt(sums[2 * heads.count + 1] / n))"
        for (h, name) in heads.enumerated() { line += "  \(name) \(fmt(sums[2 * h] / n))" + (weights.map { " ×\(weight($0[h]))" } ?? "") }
        line += "  lr \(rate(learningRate))  \(Int(samplesPerSecond)) samples/s  ETA \(duration(remaining))"
        write(interactive ? "\r\u{1B}[K" + line : line + "\n")
    }

    func epochDone(_ f: EpochFigures, epochs: Int, heads: [Head], monitor: (MonitorOptions, MonitorState)? = nil) {
        guard enabled else { return }
        var line = "epoch \(f.epoch)/\(epochs)  loss \(fmt(f.loss))"
        for (h, head) in heads.enumerated() {
            line += "  \(head.output) loss \(fmt(f.headLoss[h]))" + (f.headWeights.map { " ×\(weight($0[h]))" } ?? "")
            if head.accuracy != nil { line += " acc \(fmt(f.headAccuracy[h], digits: 3))" }
            for (m, metric) in head.metrics.enumerated() { line += " \(metric.name) \(fmt(f.headMetrics[h][m], digits: 3))" }
        }
        if let v = f.validation {
            line += "  |  val_loss \(fmt(v.total))"
            for (h, head) in heads.enumerated() {
                line += head.accuracy != nil ? "  val_\(head.output) acc \(fmt(v.headAccuracy[h], digits: 3))" : "  val_\(head.output) loss \(fmt(v.headLoss[h]))"
            }
        }
        line += "  |  lr \(rate(f.learningRate))  \(Int(f.samplesPerSecond)) samples/s  \(duration(f.seconds))"
        if let (options, state) = monitor {
            let value = f.monitored.map { String(format: "%.4f", $0) } ?? "n/a"
            line += "  |  monitor \(value)" + (f.improved ? " (best, saved best.keras)" : " (best \(state.best.map { String(format: "%.4f", $0) } ?? "n/a") at epoch \(state.bestEpoch)\(options.patience.map { "; \(state.wait)/\($0) without improvement" } ?? ""))")
        }
        write((interactive ? "\r\u{1B}[K" : "") + line + "\n")
    }
}

/// A loss weight in 4 significant digits.
func weight(_ x: Double) -> String { String(format: "%.4g", x) }

/// A learning rate in 4 significant digits (1e-05 style when small).
func rate(_ x: Float) -> String { String(format: "%.4g", Double(x)) }

func fmt(_ x: Double, digits: Int = 4) -> String { String(format: "%.\(digits)f", x) }

func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                     : String(format: "%d:%02d", s / 60, s % 60)
}
