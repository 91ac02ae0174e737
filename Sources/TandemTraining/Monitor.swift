// Best model and early stopping (docs/SPEC.md §10): `--monitor` names a figure of
// metrics.jsonl, or a weighted sum of them, evaluated after every epoch from
// the reduced epoch and validation figures, so every rank computes the same
// value and takes the same decision. Keras's EarlyStopping rules: the first
// value is the best; an epoch improves when strictly better; `wait` counts
// epochs since the last improvement; training stops once wait ≥ patience
// (from the second epoch on).

import Foundation
import TandemCore
import TandemKeras

/// A weighted sum of metric names, e.g. `0.7*val_main_output_accuracy+0.3*val_aux_output_accuracy`.
public struct MonitorExpression: Sendable, Codable, Equatable {
    public struct Term: Sendable, Codable, Equatable {
        package var coefficient: Double
        public var name: String
    }
    public var terms: [Term]
    public var text: String

    /// Parses `[c*]name (+|- [c*]name)…` (spaces allowed; c a decimal number).
    public static func parse(_ text: String) throws -> MonitorExpression {
        func bad(_ why: String) -> TandemError {
            .usage(
                "--monitor '\(text)': \(why) (expected a metric name such as val_loss, or a weighted sum such as 0.7*val_main_output_accuracy+0.3*val_aux_output_accuracy)"
            )
        }
        let compact = text.filter { !$0.isWhitespace }
        guard !compact.isEmpty else { throw bad("empty") }
        var terms: [Term] = []
        var sign = 1.0
        var current = ""
        func finish() throws {
            guard !current.isEmpty else { throw bad("a term is missing") }
            let parts = current.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
            let c: Double
            let name: String
            switch parts.count {
            case 1:
                c = 1
                name = parts[0]
            case 2:
                guard let v = Double(parts[0]), v.isFinite else { throw bad("'\(parts[0])' is not a number") }
                c = v
                name = parts[1]
            default: throw bad("'\(current)' has more than one '*'")
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), !(name.first!.isNumber)
            else {
                throw bad("'\(name)' is not a metric name")
            }
            terms.append(Term(coefficient: sign * c, name: name))
            current = ""
        }
        for ch in compact {
            // A sign right after 'e' belongs to a number's exponent (1e-3*x).
            if (ch == "+" || ch == "-") && !(current.last == "e" && Double(current.dropLast()) != nil) {
                if current.isEmpty && terms.isEmpty && ch == "-" {
                    sign = -1
                    continue
                }
                try finish()
                sign = ch == "+" ? 1 : -1
            } else {
                current.append(ch)
            }
        }
        try finish()
        return MonitorExpression(terms: terms, text: text)
    }

    /// The expression's value from an epoch's figures; nil when a figure is missing or not finite.
    package func value(_ figures: [String: Double]) -> Double? {
        var total = 0.0
        for t in terms {
            guard let v = figures[t.name], v.isFinite else { return nil }
            total += t.coefficient * v
        }
        return total
    }
}

/// How `--monitor` decides, and what it does.
public struct MonitorOptions: Sendable {
    public enum Mode: String, Sendable, Codable, CaseIterable { case min, max }
    public var expression: MonitorExpression
    package var mode: Mode
    /// Epochs without improvement before stopping; nil: never stop early.
    public var patience: Int?
    /// Put the best epoch's weights into the final weights and model.keras.
    public var restoreBest = false
    public init(expression: MonitorExpression, mode: Mode, patience: Int? = nil, restoreBest: Bool = false) {
        self.expression = expression
        self.mode = mode
        self.patience = patience
        self.restoreBest = restoreBest
    }

    /// Keras's "auto" for each term: losses and errors go down, accuracies, AUC, precision and
    /// recall up; a negative coefficient turns a term round. Nil when the terms disagree.
    public static func inferredMode(_ e: MonitorExpression, heads: [Head]) -> Mode? {
        let directions = e.terms.map { t -> Mode? in
            let name = t.name.hasPrefix("val_") ? String(t.name.dropFirst(4)) : t.name
            var up: Bool?
            if name == "loss" || name.hasSuffix("_loss") { up = false }
            for head in heads where name.hasPrefix(head.output + "_") {
                let metric = String(name.dropFirst(head.output.count + 1))
                if head.accuracy?.name == metric { up = true }
                if let m = head.metrics.first(where: { $0.name == metric }) {
                    switch m.kind {
                    case .meanAbsoluteError, .meanSquaredError, .rootMeanSquaredError: up = false
                    default: up = true
                    }
                }
            }
            guard let up else { return nil }
            return (up == (t.coefficient >= 0)) ? .max : .min
        }
        guard let first = directions.first ?? nil, directions.allSatisfy({ $0 == first }) else { return nil }
        return first
    }
}

/// Where the monitor stands; part of the checkpoint, so a resume decides as an uninterrupted run.
public struct MonitorState: Sendable, Codable, Equatable {
    /// The --monitor text this state belongs to.
    public var expression = ""
    public var best: Double?
    /// The best epoch, 1-based (0: none yet).
    public var bestEpoch = 0
    package var wait = 0
    package init() {}

    /// Takes one epoch's value; returns whether it improved on the best.
    package mutating func update(_ value: Double?, epoch: Int, mode: MonitorOptions.Mode) -> Bool {
        guard let value else { return false }
        wait += 1
        let better = best.map { mode == .min ? value < $0 : value > $0 } ?? true
        if better {
            best = value
            bestEpoch = epoch
            wait = 0
        }
        return better
    }

    /// Keras's EarlyStopping: stop once `patience` epochs passed without improvement (never after the first).
    package func shouldStop(patience: Int?, epoch: Int) -> Bool {
        guard let patience else { return false }
        return wait >= patience && epoch > 1
    }
}
