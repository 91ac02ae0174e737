// `tandem train --resume`: the checkpoint fixes what defines the run (RunConfiguration); a
// flag may restate a setting, never change it. Every such rule is one row of the table in
// `checkResume`, and a contradiction is refused with one message naming the flag, what it
// gives and what the checkpoint holds.

import TandemCore
import TandemKeras

/// What a resumed run's command line gave for the settings that define the run (nil or empty:
/// left out, so the checkpoint's holds).
public struct ResumeRequest {
    /// The preset's sizes with the size flags applied (a preset checkpoint only).
    public var sizes: HeadlineConfig?
    /// The optimizer flags given, and the optimizer they make over the checkpoint's.
    public var optimizerFlags: [String] = []
    public var optimizer: OptimizerConfig?
    public var batchSize: Int?
    public var seed: UInt64?
    public var noShuffle = false
    /// `--reproducible`'s micro-batch (nil: --reproducible not given).
    public var reproducibleMicroBatch: Int?
    /// `--head-reduction OUTPUT=MODE` as given: whether each output divides by its labelled weight.
    public var headReductions: [(output: String, labeled: Bool)] = []
    public var gradientSurgery: String?
    /// The loss-weight schedules, when any `--loss-weight-schedule` was given.
    public var lossWeightSchedules: [String: LossWeightSchedule]?
    public var lossWeighting: LearnedWeighting?
    public var gradnormAlpha: Double?
    /// `--monitor`'s expression, as parsed.
    public var monitor: String?
    public init() {}
}

extension CheckpointMetadata {
    /// Refuses the first flag of `r` that contradicts this checkpoint (`path`, for the message).
    public func checkResume(_ r: ResumeRequest, checkpoint path: String) throws {
        let c = configuration
        let learned = learnedWeighting
        // (flag, what it gives, what the checkpoint holds, whether they contradict), in the order
        // the flags are described in `tandem train --help`.
        var rows: [(flag: String, given: String, saved: String, contradicts: Bool)] = []
        if let sizes = r.sizes, let saved = c.headline {
            rows.append(("the size flags give", "\(sizes)", "\(saved)", sizes != saved))
        }
        if !r.optimizerFlags.isEmpty, let o = r.optimizer {
            rows.append(
                (
                    r.optimizerFlags.joined(separator: " "), "", "optimizer (\(c.optimizer.kind.rawValue))",
                    o != c.optimizer
                ))
        }
        if let b = r.batchSize { rows.append(("--batch-size", "\(b)", "\(c.batchSize)", b != c.batchSize)) }
        if let s = r.seed { rows.append(("--seed", "\(s)", "\(c.seed)", s != c.seed)) }
        if r.noShuffle { rows.append(("--no-shuffle", "on", "a shuffled run", c.shuffle)) }
        if let m = r.reproducibleMicroBatch {
            let saved = c.microBatch.map { "micro-batch \($0)" } ?? "ordinary mode"
            rows.append(("--reproducible --micro-batch", "\(m)", saved, m != c.microBatch))
        }
        for (output, labeled) in r.headReductions {
            let saved = (c.labeledReduction ?? []).contains(output)
            rows.append(
                (
                    "--head-reduction", "\(output)=\(labeled ? "labeled" : "batch")", saved ? "labeled" : "batch",
                    labeled != saved
                ))
        }
        if let g = r.gradientSurgery {
            rows.append(("--gradient-surgery", g, c.gradientSurgery ?? "none", g != c.gradientSurgery))
        }
        if let s = r.lossWeightSchedules {
            rows.append(("--loss-weight-schedule", "", "schedules", s != (c.lossWeightSchedules ?? [:])))
        }
        if let l = r.lossWeighting {
            rows.append(
                ("--loss-weighting", l.rawValue, learned?.kind.rawValue ?? "constant weights", l != learned?.kind))
        }
        if let a = r.gradnormAlpha, let learned, learned.kind == .gradnorm {
            rows.append(("--gradnorm-alpha", "\(a)", "\(learned.alpha ?? 1.5)", a != learned.alpha))
        }
        if let m = r.monitor, let saved = position.monitor {
            rows.append(("--monitor", "'\(m)'", "'\(saved.expression)'", m != saved.expression))
        }
        if let bad = rows.first(where: \.contradicts) {
            let given = bad.given.isEmpty ? "" : " " + bad.given
            throw TandemError.usage("--resume: \(bad.flag)\(given) contradicts the checkpoint's \(bad.saved) (\(path))")
        }
    }
}
