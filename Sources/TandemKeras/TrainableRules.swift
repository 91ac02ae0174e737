// `tandem train --trainable PATTERN=true|false`: freezing and unfreezing layers of an archive from the
// command line, as the transfer-learning guide's second phase does in code (`base.trainable = True`, then
// freezing what stays frozen). Each rule is a regular expression searched in a layer's name (a nested
// model's layers are `<model>/<layer>`; a rule that finds the model's own name applies to all its layers, as
// Keras's `model.trainable` does); the last rule that finds a layer decides. The rules rewrite config.json's
// `trainable` flags and the description is read again from it, so the frozen set, the optimizer's variables,
// RUN/model.keras and checkpoints all say the same thing, and Keras continues from the file as trained.

import Foundation
import TandemCore

/// One `PATTERN=true|false` rule.
public struct TrainableRule: Sendable {
    public let pattern: String
    public let trainable: Bool
    let regex: NSRegularExpression

    /// Parses `PATTERN=true` or `PATTERN=false` (the last `=` splits).
    public init(_ text: String) throws {
        guard let eq = text.lastIndex(of: "="), eq != text.startIndex else {
            throw TandemError.usage("--trainable '\(text)' must be PATTERN=true or PATTERN=false")
        }
        let value = text[text.index(after: eq)...].lowercased()
        guard value == "true" || value == "false" else {
            throw TandemError.usage("--trainable '\(text)': the value after '=' must be true or false")
        }
        pattern = String(text[..<eq])
        trainable = value == "true"
        do { regex = try NSRegularExpression(pattern: pattern) } catch {
            throw TandemError.usage("--trainable '\(text)': '\(pattern)' is not a regular expression (\(error))")
        }
    }

    func finds(_ name: String) -> Bool {
        regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
    }
}

extension ModelDescription {
    /// The description with `rules` applied to its layers' `trainable` flags (the file's header comment).
    /// A rule that finds no layer is refused by name.
    public func applying(_ rules: [TrainableRule]) throws -> ModelDescription {
        guard !rules.isEmpty else { return self }
        var used = Set<Int>()
        /// A layer list with the rules applied; `owners` are the names of the models it sits in.
        func rewrite(_ layers: [JSONValue], prefix: String, owners: [String], inherited: Bool?) -> ([JSONValue], Bool) {
            var anyTrainable = false
            let result = layers.map { entry -> JSONValue in
                let name = entry["config"]?["name"]?.string ?? entry["name"]?.string ?? ""
                let full = prefix + name
                guard entry["class_name"]?.string != "InputLayer", let config = entry["config"] else { return entry }
                var decided = inherited
                for (i, rule) in rules.enumerated() where rule.finds(full) || owners.contains(where: rule.finds) {
                    decided = rule.trainable
                    used.insert(i)
                }
                if entry["class_name"]?.string == "Functional", let inner = config["layers"]?.array {
                    let (layers, trainable) = rewrite(
                        inner, prefix: full + "/", owners: owners + [full], inherited: decided)
                    anyTrainable = anyTrainable || trainable
                    let flag = decided == nil ? config["trainable"] ?? .bool(true) : .bool(trainable)
                    return entry.setting(
                        "config", to: config.setting("layers", to: .array(layers)).setting("trainable", to: flag))
                }
                let trainable = decided ?? (config["trainable"]?.bool ?? true)
                anyTrainable = anyTrainable || trainable
                return decided == nil
                    ? entry : entry.setting("config", to: config.setting("trainable", to: .bool(trainable)))
            }
            return (result, anyTrainable)
        }
        guard let modelConfig = config["config"], let layers = modelConfig["layers"]?.array else { return self }
        let (rewritten, _) = rewrite(layers, prefix: "", owners: [], inherited: nil)
        for (i, rule) in rules.enumerated() where !used.contains(i) {
            throw TandemError.usage(
                "--trainable '\(rule.pattern)=\(rule.trainable)' finds no layer (names: a layer's own, or <model>/<layer> inside a nested model)"
            )
        }
        var d = try KerasConfig.description(
            from: config.setting("config", to: modelConfig.setting("layers", to: .array(rewritten))))
        d.source = source
        d.dataShapes = dataShapes
        d.dataSource = dataSource
        return d
    }
}
