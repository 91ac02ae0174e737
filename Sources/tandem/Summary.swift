// `tandem summary`: the model as Keras's model.summary() shows it (layer,
// output shape, parameters, connected to), then each output's loss, weight and
// metrics, the optimizer, and which fast paths training takes.

import ArgumentParser
import Foundation
import Tandem

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Show a model (the headline preset or a .keras archive): layers, shapes, parameters, heads and fast paths.")

    @OptionGroup var size: ModelSizeOptions

    @Flag(help: "List a nested model's layers (a keras.applications backbone) one by one, not as one line.")
    var expand = false

    func run() throws {
        try runCommand { comm in
            let resolved = try size.resolve(comm)
            var d = resolved.description
            // An Input(shape=(None, …)): built at two lengths, an axis that differs between them
            // is shown as None, as Keras shows it (--seq-len picks the length shown instead).
            let variable = !d.variableInputs.isEmpty && size.seqLen == nil
            if variable { d.takeLength(1000) }
            let model = try comm.agreeOn { try d.build(maxBatch: 1) }
            var other = d
            if variable { other.takeLength(1237) }
            let otherModel = variable ? try comm.agreeOn { try other.build(maxBatch: 1) } : model
            guard comm.rank == 0 else { return }
            var rows: [[String]] = [["Layer (type)", "Output Shape", "Param #", "Connected to"]]
            var counted = Set<String>()
            var total = 0
            // A nested model's call (its layers' ids start `<model>[@k]/`) is one line unless --expand, as Keras shows it.
            func call(_ name: String) -> String? {
                guard !expand, let first = name.split(separator: "/").first, first.count < name.count else {
                    return nil
                }
                let model = String(first.split(separator: "@").first!)
                return d.innerOrders[model] != nil ? String(first) : nil
            }
            let consumers = Dictionary(
                grouping: model.layers.flatMap { l in l.inputs.map { ($0.name, l.name) } }, by: \.0)
            var group: (key: String, params: Int, shapes: [String], from: [String], frozen: [Bool])?
            func flush() {
                guard let g = group else { return }
                let model = String(g.key.split(separator: "@").first!)
                let frozen =
                    g.frozen.allSatisfy { $0 } ? " [frozen]" : g.frozen.contains(true) ? " [partly frozen]" : ""
                let shared = g.key.contains("@") ? " [shares '\(model)']" : ""
                rows.append([
                    "\(g.key) (Functional)\(shared)\(frozen)", g.shapes.joined(separator: ", "), String(g.params),
                    g.from.isEmpty ? "-" : g.from.joined(separator: ", "),
                ])
                group = nil
            }
            for (layer, twin) in zip(model.layers, otherModel.layers) {
                let node = d.node(layer.name)
                var params = 0
                for spec in layer.parameterSpecs where counted.insert(spec.name).inserted {
                    params += spec.shape.reduce(1, *)
                }
                total += params
                let axes = zip(layer.output.shape, twin.output.shape).map { $0 == $1 ? String($0) : "None" }
                let shape = "(None, " + axes.joined(separator: ", ") + ")"
                var from = ""
                for name in layer.inputs.map({ call($0.name) ?? $0.name })
                where !from.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == name }) {
                    from += (from.isEmpty ? "" : ", ") + name
                }
                let shared = node.map { $0.call > 0 ? " [shares '\($0.layer)']" : "" } ?? ""
                // A part Tandem adds inside a Keras layer (a Bidirectional's halves, an RNN's input dropout) shows its Tandem type.
                let type = node?.className ?? "part: \(String(describing: Swift.type(of: layer)))"
                let isFrozen = d.frozenLayers.contains(node?.layer ?? layer.name)
                if let key = call(layer.name) {
                    if group?.key != key { flush() }
                    var g = group ?? (key, 0, [], [], [])
                    g.params += params
                    g.frozen.append(isFrozen || layer.parameterSpecs.isEmpty)
                    let outside = (consumers[layer.name] ?? []).contains { call($0.1) != key }
                    if outside || model.outputs.contains(where: { $0 === layer }) { g.shapes.append(shape) }
                    g.from += layer.inputs.map(\.name).filter { call($0) != key && !g.from.contains($0) }
                    group = g
                    continue
                }
                flush()
                let frozen = isFrozen ? " [frozen]" : ""
                rows.append(
                    ["\(layer.name) (\(type))\(shared)\(frozen)", shape, String(params), from.isEmpty ? "-" : from])
            }
            flush()
            let widths = (0..<4).map { c in rows.map { $0[c].count }.max()! }
            var out = "Model: \"\(d.name)\"\(resolved.headline != nil ? " (the headline preset)" : "")\n"
            let rule = String(repeating: "─", count: widths.reduce(0, +) + 6)
            for (i, row) in rows.enumerated() {
                out +=
                    row.enumerated().map { c, cell in cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ") + "\n"
                if i == 0 { out += rule + "\n" }
            }
            out += rule + "\n"
            out += " Total params: \(total) (\(String(format: "%.2f", Double(total) * 4 / 1_048_576)) MB)\n"
            // As Keras counts them: a frozen layer's weights and BatchNormalization's moving statistics are not trainable.
            let trainable = model.parameters.tensors.filter { $0.spec.trainable }.reduce(0) { $0 + $1.count }
            out += " Trainable params: \(trainable)\n Non-trainable params: \(total - trainable)\n"
            out += "\nHeads (one weighted total loss; each head's gradient reaches every layer it depends on):\n"
            for h in d.heads {
                let names =
                    (h.accuracy.map { ["\($0.name) (\($0.kind.rawValue))"] } ?? [])
                    + h.metrics.map { $0.weighted ? "\($0.name) (weighted)" : $0.name }
                var loss = h.loss.rawValue + (h.fromLogits ? " (from logits)" : "")
                let o = h.options
                if o.labelSmoothing != 0 { loss += ", label smoothing \(o.labelSmoothing)" }
                if h.loss == .binaryFocalCrossentropy {
                    loss += ", gamma \(o.gamma)" + (o.applyClassBalancing ? ", alpha \(o.alpha)" : "")
                }
                if h.loss == .huber { loss += ", delta \(o.delta)" }
                if let c = o.ignoreClass { loss += ", ignore class \(c) (mean over labelled samples)" }
                out +=
                    "  \(h.output): \(loss), weight \(h.weight), metrics \(names.isEmpty ? "none" : names.joined(separator: ", "))\n"
            }
            if d.heads.isEmpty { out += "  none: the archive was saved without compile(loss=...)\n" }
            if variable {
                let names = d.variableInputs.map { d.node($0)!.layer }.joined(separator: ", ")
                out += "\nVariable length: \(names) (None axes take their length from the data file)\n"
            }
            for r in d.regularizers { out += "  penalty on \(r.tensor): l1 \(r.l1), l2 \(r.l2)\n" }
            let config = d.optimizer ?? OptimizerConfig(kind: .adam)
            out +=
                "\nOptimizer: \(d.optimizer.map(\.summary) ?? "none compiled (train defaults to sgd; paths shown for adam)")\n"
            let optimizer = Optimizer(config, parameters: model.parameters)
            try optimizer.constrain(d.constraints, in: model.parameters)
            for c in d.constraints { out += "Constraint on \(c.tensor): \(c.kind), over axes \(c.axes)\n" }
            let step = try TrainingStep(
                model: model, heads: d.heads, optimizer: optimizer, communicator: comm, regularizers: d.regularizers)
            out += "Training path: \(step.pathDescription)\n"
            print(out, terminator: "")
        }
    }
}
