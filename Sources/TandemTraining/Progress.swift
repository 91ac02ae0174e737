// Progress for people, as Keras's `verbose`: 1 (the default) draws a bar per
// epoch redrawn in place on a terminal — step/total, each head's running loss
// and metrics, samples/s, ETA — and prints a line every ~10% of an epoch when
// stderr is not a terminal; 2 prints only the line per epoch; 0 prints nothing.

import Foundation
import TandemCore
import TandemKeras

final class Progress {
    let enabled: Bool
    /// Keras's verbose: 0 silent, 1 progress, 2 one line per epoch.
    let verbosity: Int
    private let interactive: Bool
    private var lastPrint = Date.distantPast

    init(enabled: Bool, verbosity: Int = 1) {
        self.enabled = enabled && verbosity > 0
        self.verbosity = verbosity
        interactive = isatty(STDERR_FILENO) != 0
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    /// Whether the step line for `batch` of `batches` is printed (so its figures need computing).
    func due(batch: Int, batches: Int) -> Bool {
        guard enabled && verbosity == 1 else { return false }
        if interactive { return Date().timeIntervalSince(lastPrint) > 0.1 || batch == batches }
        let tenth = max(1, batches / 10)
        return batch % tenth == 0 && batch != batches
    }

    /// The running figures of the epoch so far (`f`: losses, accuracies and metrics of the batches done).
    func step(
        _ f: EpochFigures, epochs: Int, batch: Int, batches: Int, heads: [Head],
        learningRate: Float, samplesPerSecond: Double, remaining: Double
    ) {
        lastPrint = Date()
        var line = "epoch \(f.epoch)/\(epochs)  "
        if interactive {
            let width = 24
            let done = batches > 0 ? width * batch / batches : width
            line +=
                "\(batch)/\(batches) " + String(repeating: "━", count: done)
                + String(repeating: "╌", count: width - done)
        } else {
            line += "step \(batch)/\(batches)"
        }
        line += "  loss \(fmt(f.loss))"
        for (h, head) in heads.enumerated() {
            line += "  \(head.output) \(fmt(f.headLoss[h]))" + (f.headWeights.map { " ×\(weight($0[h]))" } ?? "")
            if interactive {
                if head.accuracy != nil { line += " acc \(fmt(f.headAccuracy[h], digits: 3))" }
                for (m, metric) in head.metrics.enumerated() {
                    line += " \(metric.name) \(fmt(f.headMetrics[h][m], digits: 3))"
                }
            }
        }
        line += "  lr \(rate(learningRate))  \(Int(samplesPerSecond)) samples/s  ETA \(duration(remaining))"
        write(interactive ? "\r\u{1B}[K" + line : line + "\n")
    }

    func epochDone(_ f: EpochFigures, epochs: Int, heads: [Head], monitor: (MonitorOptions, MonitorState)? = nil) {
        guard enabled else { return }
        var line = "epoch \(f.epoch)/\(epochs)  loss \(fmt(f.loss))"
        for (h, head) in heads.enumerated() {
            line += "  \(head.output) loss \(fmt(f.headLoss[h]))" + (f.headWeights.map { " ×\(weight($0[h]))" } ?? "")
            if head.accuracy != nil { line += " acc \(fmt(f.headAccuracy[h], digits: 3))" }
            for (m, metric) in head.metrics.enumerated() {
                line += " \(metric.name) \(fmt(f.headMetrics[h][m], digits: 3))"
            }
        }
        if let v = f.validation {
            line += "  |  val_loss \(fmt(v.total))"
            for (h, head) in heads.enumerated() {
                line +=
                    head.accuracy != nil
                    ? "  val_\(head.output) acc \(fmt(v.headAccuracy[h], digits: 3))"
                    : "  val_\(head.output) loss \(fmt(v.headLoss[h]))"
            }
        }
        line += "  |  lr \(rate(f.learningRate))  \(Int(f.samplesPerSecond)) samples/s  \(duration(f.seconds))"
        if let (options, state) = monitor {
            let value = f.monitored.map { String(format: "%.4f", $0) } ?? "n/a"
            line +=
                "  |  monitor \(value)"
                + (f.improved
                    ? " (best, saved best.keras)"
                    : " (best \(state.best.map { String(format: "%.4f", $0) } ?? "n/a") at epoch \(state.bestEpoch)\(options.patience.map { "; \(state.wait)/\($0) without improvement" } ?? ""))")
        }
        write((interactive && verbosity == 1 ? "\r\u{1B}[K" : "") + line + "\n")
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
    return s >= 3600
        ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
        : String(format: "%d:%02d", s / 60, s % 60)
}
